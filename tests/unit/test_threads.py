import threading

from courier import threads


def test_a_name_longer_than_linux_keeps_loses_couriers_prefix_first():
    assert threads.os_name("courier-changes") == "courier-changes"          # 15: kept as it is
    assert threads.os_name("courier-worker-0") == "c-worker-0"
    assert threads.os_name("courier-scheduler") == "c-scheduler"
    assert threads.os_name("courier-a-very-long-fetch-name") == "c-a-very-long-f"
    assert threads.os_name("something-else-long") == "something-else-"


def test_a_courier_thread_has_its_name_in_the_operating_system():
    seen = {}

    def look() -> None:
        seen["comm"] = open(f"/proc/self/task/{threading.get_native_id()}/comm").read().strip()

    thread = threads.Thread(target=look, name="courier-worker-7", daemon=True)
    thread.start()
    thread.join(10)
    assert seen["comm"] == "c-worker-7"
    plain = threading.Thread(target=look)                # what it replaces: the OS name is the process's
    plain.start()
    plain.join(10)
    assert seen["comm"] != "c-worker-7"
