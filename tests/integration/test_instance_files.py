"""Where Courier reads a stored instance's file (orthanc_rest.instance_file): in Orthanc's process
when Orthanc keeps its index and files itself (a tenth of the CPU of loopback HTTP, a GIL held
that briefly), over HTTP when plugins keep them or the file is large (a read may then take
milliseconds). Asked of real Orthancs, one with orthanc-postgresql's index and storage; the
in-process reader is the test's own, so which way was taken shows in what comes back."""
from courier.orthanc_rest import IN_PROCESS_BYTES, OrthancRest
from factory import write_instances
from harness import storescu, wait_until


def stored(node, tmp_path) -> tuple[str, bytes]:
    path = write_instances(tmp_path / node.name, 1, size=16)[0]
    storescu(node.dicom_port, [path])
    (instance,) = wait_until(lambda: node.instances(), 20, what="the instance stored")
    return instance, path.read_bytes()


def test_orthancs_own_files_are_read_in_its_process_a_storage_plugins_over_http(cluster, tmp_path, postgres):
    reads = []

    def in_process(instance_id):
        reads.append(instance_id)
        return b"read in the process"

    own = cluster.orthanc("own-files")
    instance, _ = stored(own, tmp_path)
    rest = OrthancRest(own.url, read_file=in_process)
    assert rest.instance_file(instance) == b"read in the process" and reads == [instance]
    assert rest.instance_file(instance) == b"read in the process" and len(reads) == 2   # /system asked once
    assert rest.instance_file(instance, size=IN_PROCESS_BYTES + 1)[128:132] == b"DICM" and len(reads) == 2  # large: HTTP

    in_postgresql = cluster.orthanc("pg-files", postgresql=postgres.create_database())
    instance, _ = stored(in_postgresql, tmp_path)
    rest = OrthancRest(in_postgresql.url, read_file=in_process)
    data = rest.instance_file(instance)
    assert len(reads) == 2 and data[128:132] == b"DICM" and data != b"read in the process"
    assert OrthancRest(own.url).instance_file(own.instances()[0])[128:132] == b"DICM"      # no reader: HTTP


def test_an_instance_deleted_before_its_pseudonymized_copy_is_sent_fails_for_good_the_rest_goes(cluster, tmp_path):
    """Read in Orthanc's process, an instance deleted from the router while its destination was
    down is a permanent failure naming the reason (not 50 retries); every other one is delivered."""
    dest = cluster.orthanc("dest", start=False)
    (tmp_path / "key").write_text("a secret of the trial\n")
    router = cluster.orthanc("router", courier={
        "AllowedCallers": "Any", "Retry": {"MaxAttempts": 50, "InitialDelaySeconds": 0.3, "MaxDelaySeconds": 1},
        "Pseudonymization": {"trial": {"SecretFile": str(tmp_path / "key")}},
        "Routes": [{"Name": "r", "Trigger": "Instance", "Pseudonymize": "trial", "Destinations": ["dest"]}]},
        extra={"DicomModalities": {"dest": dest.as_modality()}})
    storescu(router.dicom_port, write_instances(tmp_path / "in", 12, size=16))
    wait_until(lambda: len(t := router.get("/courier/tasks")["tasks"]) == 12 and all(x["attempts"] >= 1 for x in t),
               40, what="every task tried once against the stopped destination")
    gone = router.instances()[0]
    router.delete(f"/instances/{gone}").raise_for_status()
    dest.start()
    tasks = wait_until(lambda: (t := router.get("/courier/tasks")["tasks"])
                       and all(x["state"] not in ("PENDING", "RUNNING") for x in t) and t, 60, what="every task ended")
    failed = [router.get(f"/courier/tasks/{t['id']}") for t in tasks if t["state"] != "SUCCESS"]
    assert len(failed) == 1 and len(dest.instances()) == 11
    assert failed[0]["state"] == "FAILURE" and failed[0]["resource_id"] == gone
    assert f"instance {gone} could not be read from Orthanc: Unknown resource" in failed[0]["last_error"]
    assert failed[0]["attempts"] <= 3                      # not retried: the instance is gone
