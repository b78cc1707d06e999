"""orthanc_rest.JobEnds: the ends of Orthanc jobs that the plugin's change callback hears, for the
workers waiting for them (end to end: test_routing's store job ended by Orthanc's signal)."""
import threading
import time

from courier.orthanc_rest import JobEnds


def test_an_end_signalled_before_its_wait_is_not_missed():
    ends = JobEnds()
    ends.ended("job-1")                  # Orthanc's job thread may signal before the POST has answered
    started = time.monotonic()
    assert ends.wait("job-1", 5.0) is True
    assert time.monotonic() - started < 1.0


def test_a_wait_ends_at_the_signal_or_after_its_timeout():
    ends = JobEnds()
    assert ends.wait("job-2", 0.05) is False
    started = time.monotonic()
    threading.Timer(0.1, ends.ended, args=("job-2",)).start()
    threading.Timer(0.05, ends.ended, args=("another job",)).start()
    assert ends.wait("job-2", 5.0) is True            # another job's end does not end this wait
    assert 0.09 <= time.monotonic() - started < 2.0


def test_only_the_last_ends_are_kept_and_a_finished_wait_forgets_its_job():
    ends = JobEnds()
    for index in range(JobEnds.KEEP + 1):
        ends.ended(f"job-{index}")
    assert ends.wait("job-0", 0) is False and ends.wait(f"job-{JobEnds.KEEP}", 0) is True
    ends.forget(f"job-{JobEnds.KEEP}")
    assert ends.wait(f"job-{JobEnds.KEEP}", 0) is False
