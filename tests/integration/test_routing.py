"""Routes end to end: storescu -> Courier (real Orthanc + plugin) -> real destinations."""
import time

from factory import write_instances
from harness import storescu, wait_until

FAST_RETRY = {"MaxAttempts": 50, "InitialDelaySeconds": 0.3, "Multiplier": 2, "MaxDelaySeconds": 1}
MODALITY = {"AET": "MODALITY", "Host": "127.0.0.1", "Port": 1}


def router(cluster, routes, destinations, start=True, **courier):
    modalities = {"modality": MODALITY}
    modalities.update({d.name: d.as_modality() for d in destinations})
    return cluster.orthanc("router", start=start, courier={"Retry": FAST_RETRY, "Routes": routes, **courier},
                           extra={"DicomModalities": modalities})


def tasks(node, **query):
    return node.get("/courier/tasks", **query)["tasks"]


def test_rules_send_matches_and_fallback_takes_the_rest(cluster, tmp_path):
    ct_dest, other_dest = cluster.orthanc("ctdest"), cluster.orthanc("otherdest")
    node = router(cluster, [
        {"Name": "ct", "Match": {"Modality": "CT", "SeriesDescription": {"not": {"regex": "(?i)scout"}}},
         "Destinations": ["ctdest"]},
        {"Name": "us-nowhere", "Match": {"Modality": "US"}, "Destinations": ["ctdest"]},
        {"Name": "rest", "Fallback": True, "Destinations": ["otherdest"]},
    ], [ct_dest, other_dest])
    ct = write_instances(tmp_path / "ct", 2, modality="CT")
    scout = write_instances(tmp_path / "scout", 1, modality="CT", SeriesDescription="Scout")
    mr = write_instances(tmp_path / "mr", 1, modality="MR")
    storescu(node.dicom_port, ct + scout + mr, calling="MODALITY")
    def uid(paths):
        return {p.stem for p in paths}
    wait_until(lambda: ct_dest.sop_uids() == uid(ct) and other_dest.sop_uids() == uid(scout + mr),
               30, what="CT at ctdest, the rest at otherdest")
    assert {t["route"] for t in tasks(node)} == {"ct", "rest"}
    wait_until(lambda: all(t["state"] == "SUCCESS" for t in tasks(node)), 10, what="every task recorded SUCCESS")


def test_each_destination_kind(cluster, tmp_path):
    dicom, web, peer = cluster.orthanc("dicomdest"), cluster.orthanc("webdest", dicomweb=True), cluster.orthanc("peerdest")
    folder = tmp_path / "export"
    node = cluster.orthanc("router", dicomweb=True, courier={
        "Retry": FAST_RETRY, "Folders": {"folder": {"Path": str(folder), "Layout": "{PatientID}/{SOPInstanceUID}.dcm"}},
        "Routes": [{"Name": "all", "Trigger": "StableSeries", "Destinations": ["dicomdest", "web", "peer", "folder"]}]},
        extra={"DicomModalities": {"modality": MODALITY, "dicomdest": dicom.as_modality()},
               "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "Servers": {"web": [web.url + "/dicom-web/"]}},
               "OrthancPeers": {"peer": {"Url": peer.url + "/"}}})
    files = write_instances(tmp_path / "in", 3, patient_id="P42")
    storescu(node.dicom_port, files, calling="MODALITY")
    expected = {p.stem for p in files}
    wait_until(lambda: dicom.sop_uids() == expected and web.sop_uids() == expected and peer.sop_uids() == expected,
               40, what="the series at the DICOM, DICOMweb and peer destinations")
    wait_until(lambda: {p.stem for p in (folder / "P42").glob("*.dcm")} == expected, 20, what="files in the folder")
    done = wait_until(lambda: [t for t in tasks(node) if t["state"] == "SUCCESS"] if len(
        [t for t in tasks(node) if t["state"] == "SUCCESS"]) == 4 else None, 20, what="4 successful tasks")
    assert {t["destination"] for t in done} == {"dicomdest", "web", "peer", "folder"}
    assert all(t["expected"] == 3 and t["delivered"] == 3 and t["level"] == "Series" for t in done)


def test_destination_down_then_up_gets_everything(cluster, tmp_path):
    dest = cluster.orthanc("dest", start=False)
    node = router(cluster, [{"Name": "all", "Destinations": ["dest"]}], [dest])
    files = write_instances(tmp_path / "in", 5)
    storescu(node.dicom_port, files, calling="MODALITY")
    wait_until(lambda: len(tasks(node)) == 5 and all(t["attempts"] >= 2 and t["state"] in ("PENDING", "RUNNING")
                                                     for t in tasks(node)), 30, what="failed attempts")
    wait_until(lambda: (pending := tasks(node, state="PENDING")) and "Connection refused" in (pending[0]["last_error"] or ""),
               10, what="a pending task saying why")       # they retry as one batch: at times all RUNNING
    dest.start()
    wait_until(lambda: dest.sop_uids() == {p.stem for p in files}, 30, what="delivery after the outage")
    wait_until(lambda: all(t["state"] == "SUCCESS" for t in tasks(node)), 10, what="tasks SUCCESS")


def test_kill_9_then_restart_loses_nothing(cluster, tmp_path):
    dest = cluster.orthanc("dest", start=False)
    node = router(cluster, [{"Name": "all", "Trigger": "Instance", "Destinations": ["dest"]}], [dest])
    files = write_instances(tmp_path / "in", 20)
    storescu(node.dicom_port, files, calling="MODALITY")
    wait_until(lambda: len(tasks(node)) == 20, 30, what="20 queued tasks")
    node.stop(kill=True)
    dest.start()
    node.start()
    wait_until(lambda: dest.sop_uids() == {p.stem for p in files}, 40, what="all 20 after restart")
    wait_until(lambda: all(t["state"] == "SUCCESS" for t in tasks(node)), 10, what="tasks SUCCESS")
    assert len(tasks(node)) == 20          # the restart re-read nothing twice


def test_changes_not_yet_routed_when_killed_are_routed_after_restart(cluster, tmp_path):
    dest = cluster.orthanc("dest")
    node = router(cluster, [{"Name": "all", "Destinations": ["dest"]}], [dest])
    node.stop(kill=True)
    # Orthanc without Courier receives while Courier is down; its change log keeps the events.
    plain = dict(node.config)
    plain.pop("PythonScript")
    plain["Plugins"] = []
    from harness import Orthanc
    bare = Orthanc(tmp_path, "router", extra=plain, http_port=node.http_port, dicom_port=node.dicom_port)
    cluster.nodes.append(bare)
    bare.start()
    files = write_instances(tmp_path / "in", 4)
    storescu(bare.dicom_port, files, calling="MODALITY")
    bare.stop()
    node.start()
    wait_until(lambda: dest.sop_uids() == {p.stem for p in files}, 30, what="routing of the backlog")


def test_unknown_calling_ae_and_wrong_host_are_refused_and_recorded(cluster, tmp_path):
    dest = cluster.orthanc("dest")
    node = cluster.orthanc("router", courier={"Routes": [{"Name": "all", "Destinations": ["dest"]}]},
                           extra={"DicomModalities": {"dest": dest.as_modality(), "modality": MODALITY,
                                                      "elsewhere": {"AET": "ELSEWHERE", "Host": "127.0.0.2", "Port": 1}}})
    files = write_instances(tmp_path / "in", 1)
    assert storescu(node.dicom_port, files, calling="STRANGER", check=False).returncode != 0
    storescu(node.dicom_port, files, calling="ELSEWHERE")          # accepted by DICOM, from the wrong host
    entries = wait_until(lambda: (e := node.get("/courier/audit", action="instance-rejected")["entries"])
                         and len(e) == 2 and e, 20, what="two rejections")
    reasons = {e["actor"]: e["detail"]["reason"] for e in entries}
    assert "not declared in DicomModalities" in reasons["STRANGER"]
    assert "connected from 127.0.0.1" in reasons["ELSEWHERE"]
    assert node.instances() == [] and dest.instances() == [] and tasks(node) == []


def test_route_allowed_calling_aets(cluster, tmp_path):
    dest = cluster.orthanc("dest")
    node = router(cluster, [{"Name": "only-ct1", "Destinations": ["dest"], "AllowedCallingAets": ["CT1"]}], [dest],
                  AllowedCallers="Any")
    storescu(node.dicom_port, write_instances(tmp_path / "in", 1), calling="MODALITY")
    entry = wait_until(lambda: node.get("/courier/audit", action="route-refused-caller")["entries"], 20,
                       what="route refusal")[0]
    assert entry["route"] == "only-ct1" and entry["actor"] == "MODALITY"
    assert tasks(node) == []


def test_folder_layout_stays_inside_the_folder(cluster, tmp_path):
    folder = tmp_path / "export" / "inner"
    node = cluster.orthanc("router", courier={
        "AllowedCallers": "Any",
        "Folders": {"out": {"Path": str(folder), "Layout": "{PatientID}/{StudyID}/{SOPInstanceUID}.dcm"}},
        "Routes": [{"Name": "r", "Destinations": ["out"]}]})
    files = write_instances(tmp_path / "in", 1, patient_id="../../escaped", StudyID="..")
    storescu(node.dicom_port, files)
    written = wait_until(lambda: list(folder.rglob("*.dcm")), 20, what="a written file")
    assert len(written) == 1 and written[0].name == f"{files[0].stem}.dcm"
    assert sorted(p.name for p in (tmp_path / "export").iterdir()) == ["inner"]
    assert not (tmp_path / "escaped").exists() and not (tmp_path.parent / "escaped").exists()


def test_condition_script_route_and_stable_study_with_delete(cluster, tmp_path):
    dest = cluster.orthanc("dest")
    node = router(cluster, [{"Name": "ct-no-scout", "Trigger": "StableStudy", "Condition": "ct_without_localizers.py",
                             "Destinations": ["dest"], "DeleteAfterDelivery": True}], [dest])
    ct = write_instances(tmp_path / "ct", 2, modality="CT")
    scout = write_instances(tmp_path / "scout", 1, modality="CT", SeriesDescription="Topogram")
    storescu(node.dicom_port, ct + scout, calling="MODALITY")
    wait_until(lambda: dest.sop_uids() == {p.stem for p in ct}, 30, what="the CT study at dest")
    wait_until(lambda: node.get("/studies") and len(node.get("/studies")) == 1, 20, what="one study left")
    # the delivered study is deleted from the router; the scout study matched nothing and stays
    assert node.get("/studies/" + node.get("/studies")[0])["MainDicomTags"]["StudyInstanceUID"] == \
        __import__("pydicom").dcmread(scout[0]).StudyInstanceUID


def test_a_hung_destination_holds_at_most_its_share_of_workers(cluster, tmp_path):
    from harness import BlackHole
    hole = BlackHole()
    try:
        good = cluster.orthanc("good")
        node = cluster.orthanc("router", courier={
            "AllowedCallers": "Any", "Workers": 4, "MaxWorkersPerDestination": 2, "BatchSize": 1,
            "Retry": {"InitialDelaySeconds": 30},
            "Routes": [{"Name": "to-hole", "Priority": 10, "Destinations": ["hole"]},
                       {"Name": "to-good", "Destinations": ["good"]}]},
            extra={"DicomScuTimeout": 20, "DicomModalities": {
                "hole": {"AET": "HOLE", "Host": "127.0.0.1", "Port": hole.port}, "good": good.as_modality()}})
        files = write_instances(tmp_path / "in", 6)
        storescu(node.dicom_port, files)
        wait_until(lambda: good.sop_uids() == {p.stem for p in files}, 15, what="the good destination served")
        assert hole.open_now() == 2          # still hanging: the good one did not wait for it
        assert hole.most_open == 2           # never more than MaxWorkersPerDestination
        assert len(tasks(node, route="to-hole", state="RUNNING")) == 2
    finally:
        hole.close()


def test_an_instance_nested_too_deep_for_orthanc_is_refused_at_the_door(cluster, tmp_path):
    """Orthanc 1.10.1 segfaults rendering an instance whose sequences nest ~50 deep; stored, it would
    stop the router at every read of its tags. Courier's C-STORE filter refuses it with a reason."""
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    from factory import make_instance
    dest = cluster.orthanc("dest")
    node = router(cluster, [{"Name": "ct", "Match": {"Modality": "CT"}, "Destinations": ["dest"]}], [dest],
                  AllowedCallers="Any")
    deep = make_instance(patient_id="DEEP")
    inner = Dataset()
    inner.CodeValue = "x"
    for _ in range(59):
        outer = Dataset()
        outer.ContentSequence = Sequence([inner])
        inner = outer
    deep.ContentSequence = Sequence([inner])
    (tmp_path / "deep").mkdir()
    deep.save_as(tmp_path / "deep" / "deep.dcm", enforce_file_format=True)
    refused = storescu(node.dicom_port, [tmp_path / "deep" / "deep.dcm"], check=False)
    assert "0xc000" in (refused.stdout + refused.stderr).lower() or refused.returncode != 0
    normal = write_instances(tmp_path / "ok", 1)
    storescu(node.dicom_port, normal)
    wait_until(lambda: dest.sop_uids() == {normal[0].stem}, 20, what="a normal instance routed")
    assert node.process.poll() is None and node.instances() != []
    entries = node.get("/courier/audit", action="instance-rejected")["entries"]
    assert any("nested" in e["detail"]["reason"] for e in entries)


def test_a_pseudonymized_burst_is_topped_up_into_few_associations_without_batch_linger(cluster, tmp_path):
    """Courier's own bytes (a profile) go through storescu, one run per batch: a short batch of a
    burst is topped up while more keeps coming, and the other workers leave the destination to
    it, so 30 instances go in a few associations rather than one each; a lone instance waits
    one step only."""
    from peers import RecordingScp

    scp = RecordingScp("BURST")
    key = tmp_path / "k"
    key.write_text("a-secret-of-the-test-0123")
    try:
        node = cluster.orthanc("router", courier={
            "AllowedCallers": "Any", "Pseudonymization": {"p": {"SecretFile": str(key), "BurnedInAnnotation": "Pass"}},
            "Routes": [{"Name": "each", "Destinations": ["burst"], "Pseudonymize": "p"}]},
            extra={"DicomModalities": {"burst": scp.modality}})
        groups = [write_instances(tmp_path / f"burst{group}", 5, size=64) for group in range(6)]
        for files in groups:          # a burst that trickles in: 6 associations of 5 instances, back to back
            storescu(node.dicom_port, files)
        wait_until(lambda: len(scp.uids()) == 30, 30, what="the burst delivered")
        assert scp.associations <= 12, scp.associations          # one each without the top-up: 30 (21 measured)
        before = scp.associations
        lone = write_instances(tmp_path / "lone", 1, size=16)
        started = time.monotonic()
        storescu(node.dicom_port, lone)
        wait_until(lambda: len(scp.uids()) == 31, 10, 0.02, what="a lone instance delivered")
        assert time.monotonic() - started < 6.0 and scp.associations == before + 1, scp.associations - before
    finally:
        scp.close()


def test_a_trickle_waits_behind_a_send_in_flight_and_goes_in_few_associations(cluster, tmp_path):
    """Without BatchLingerSeconds, a pass-through worker that claims a short batch while another
    worker of the router sends to the same destination waits for that send (at most 0.5 s) and
    takes what arrived meanwhile: 20 instances trickling in 40 ms apart, while the destination
    holds a first one for 3 s, go in a few associations, not one small batch after another; a
    lone instance with nothing in flight goes at once, in an association of its own."""
    from pydicom import dcmread
    from pynetdicom import AE
    from pynetdicom.sop_class import CTImageStorage

    from peers import RecordingScp

    def hold_the_first(ds):
        if ds.PatientID == "HOLD":
            time.sleep(3.0)
        return None

    scp = RecordingScp("TRICKLE", refuse=hold_the_first)
    try:
        node = cluster.orthanc("router", courier={"AllowedCallers": "Any", "EchoIntervalSeconds": 0,
                                                  "Routes": [{"Name": "each", "Destinations": ["trickle"]}]},
                               extra={"DicomModalities": {"trickle": scp.modality}})
        held = write_instances(tmp_path / "held", 1, size=16, patient_id="HOLD")
        storescu(node.dicom_port, held)
        wait_until(lambda: len(scp.offered) == 1, 10, 0.02, what="the first instance at the destination, held there")
        trickle = [dcmread(p) for p in write_instances(tmp_path / "trickle", 20, size=16)]
        ae = AE(ae_title="TRICKLER")
        ae.add_requested_context(CTImageStorage)
        assoc = ae.associate("127.0.0.1", node.dicom_port, ae_title="ANY-SCP")
        assert assoc.is_established
        try:
            for ds in trickle:
                assert assoc.send_c_store(ds).Status == 0
                time.sleep(0.04)
        finally:
            assoc.release()
        wait_until(lambda: len(scp.uids()) == 21, 30, what="the trickle delivered")
        # one association for the held instance; without the wait the other worker claimed each
        # change page at once: 20 associations for the 20 (measured 3 times), 4 with it
        assert scp.associations - 1 <= 8, scp.associations
        # and no batch waited for the whole 3 s send: the wait ends after 0.5 s
        assert scp.received.index(held[0].stem) > 0, "the trickle waited for the held instance's send"
        before = scp.associations
        lone = write_instances(tmp_path / "lone", 1, size=16)
        started = time.monotonic()
        storescu(node.dicom_port, lone)
        wait_until(lambda: len(scp.uids()) == 22, 10, 0.02, what="a lone instance delivered")
        assert time.monotonic() - started < 3.0 and scp.associations == before + 1
    finally:
        scp.close()


def test_a_burst_waits_batch_linger_and_goes_in_few_associations(cluster, tmp_path):
    """BatchLingerSeconds: workers that took a short batch of new Instance tasks wait for more of
    the burst, so 30 instances go in a few associations instead of one small batch after another."""
    from peers import RecordingScp

    scp = RecordingScp("BURST")
    try:
        node = cluster.orthanc("router", courier={"AllowedCallers": "Any", "BatchLingerSeconds": 1.5,
                                                  "Routes": [{"Name": "each", "Destinations": ["burst"]}]},
                               extra={"DicomModalities": {"burst": scp.modality}})
        files = write_instances(tmp_path / "burst", 30, size=16)
        storescu(node.dicom_port, files)
        wait_until(lambda: scp.uids() == {p.stem for p in files}, 30, what="the burst delivered")
        assert scp.associations <= 4, scp.associations
        wait_until(lambda: node.get("/courier/tasks", state="SUCCESS", limit=100)["total"] == 30, 10,
                   what="the tasks recorded SUCCESS (just after the destination acknowledged them)")
    finally:
        scp.close()


def test_a_store_job_ends_for_its_worker_when_orthanc_signals_it(cluster, tmp_path):
    """A worker waiting for its Orthanc store job looks at the job when Orthanc's JOB_SUCCESS
    change says it ended (orthanc_rest.JobEnds, fed by the plugin's change callback), not at its
    next poll: without the signal each of these lone instances would wait CHECK_SECONDS (2 s)
    for its job to be asked again."""
    import statistics

    from courier.orthanc_rest import CHECK_SECONDS

    dest = cluster.orthanc("dest")
    node = router(cluster, [{"Name": "each", "Destinations": ["dest"]}], [dest])
    for index in range(5):
        storescu(node.dicom_port, write_instances(tmp_path / f"lone{index}", 1, size=16), calling="MODALITY")
        wait_until(lambda n=index + 1: len(dest.instances()) == n, 30, 0.02, what=f"instance {index + 1} delivered")

    def succeeded():
        done = [t for t in tasks(node) if t["state"] == "SUCCESS"]
        return done if len(done) == 5 else None

    done = wait_until(succeeded, 20, what="5 successful tasks")
    waited = statistics.median(t["finished_at"] - t["created_at"] for t in done)
    assert waited < CHECK_SECONDS / 2, f"median receipt -> delivered {waited:.2f} s"


def test_a_kill_9_mid_send_is_sent_again_by_courier_only_not_also_by_orthancs_resumed_job(cluster, tmp_path):
    """Orthanc's SaveJobs (true by default) would make the restarted Orthanc resume the store job
    that was in flight at the kill, from its first instance, while Courier sends the batch again
    (measured with it true: 66 deliveries of 30 instances, the job reloaded). Courier ships
    "SaveJobs": false (orthanc.json, harness.ROUTER_ORTHANC), and says so when it is not."""
    from collections import Counter

    from peers import RecordingScp

    recorder = RecordingScp("SLOWREC", delay=0.15)
    try:
        node = cluster.orthanc("router", courier={
            "AllowedCallers": "Any", "Workers": 1, "BatchSize": 100, "BatchLingerSeconds": 1.0,
            "Routes": [{"Name": "r", "Destinations": ["rec"]}]}, extra={"DicomModalities": {"rec": recorder.modality}})
        assert node.get("/courier/status")["orthanc_warnings"] == []
        files = write_instances(tmp_path / "in", 30, size=16)
        storescu(node.dicom_port, files, calling="MODALITY")
        wait_until(lambda: len(recorder.received) >= 5, 30, 0.05, what="a batch under way")
        in_flight = node.get("/jobs")
        node.stop(kill=True)
        node.start()
        wait_until(lambda: {t["state"] for t in tasks(node)} == {"SUCCESS"} and len(tasks(node)) == 30, 60,
                   what="every task delivered after the restart")
        assert not set(in_flight) & set(node.get("/jobs")), "Orthanc reloaded the job in flight at the kill"
        time.sleep(2)              # a resumed job would go on sending meanwhile
        copies = Counter(recorder.received)
        assert set(copies) == {p.stem for p in files}
        assert max(copies.values()) <= 2, f"sent {len(recorder.received)} times for 30 instances"
        node.stop()
        node.config["SaveJobs"] = True
        node.start()
        (warning,) = node.get("/courier/status")["orthanc_warnings"]
        assert "SaveJobs" in warning and '"SaveJobs": false' in warning
        assert "orthanc.json: SaveJobs is true" in node.log_path.read_text()
    finally:
        recorder.close()


def test_an_orthanc_started_without_tcp_nodelay_gets_nagles_algorithm_off_from_courier(cluster, tmp_path):
    """DCMTK keeps Nagle's algorithm on unless TCP_NODELAY is set, and Debian's orthanc.service
    does not set it: each C-STORE then waited for a delayed acknowledgment (50 CT instances in
    2.4 s against 0.19 s, measured). Courier sets it when Orthanc loads the plugin: read from the
    sockets themselves, Orthanc's DICOM server, Orthanc's own store job (a pass-through route)
    and Courier's storescu (a pseudonymizing route of 12 instances) all have it off. Set to 0 by
    whoever starts Orthanc, it is kept, and named in GET /courier/status and the log."""
    from pynetdicom import AE
    from pynetdicom.sop_class import Verification

    from peers import RecordingScp
    from sockets import nodelay

    def orthanc_server_nodelay(node) -> bool:
        ae = AE(ae_title="PROBE")
        ae.add_requested_context(Verification)
        assoc = ae.associate("127.0.0.1", node.dicom_port, ae_title="ANY-SCP")
        assert assoc.is_established
        try:
            return nodelay(node.dicom_port, assoc.dul.socket.socket.getsockname()[1])
        finally:
            assoc.release()

    key = tmp_path / "k"
    key.write_text("a-secret-of-the-test-0123")
    plain, pseudo = RecordingScp("PLAIN", nodelay=True), RecordingScp("PSEUDO", nodelay=True)
    try:
        node = cluster.orthanc("router", start=False, courier={
            "AllowedCallers": "Any", "EchoIntervalSeconds": 0,
            "Pseudonymization": {"p": {"SecretFile": str(key), "BurnedInAnnotation": "Pass"}},
            "Routes": [{"Name": "plain", "Destinations": ["plain"]},
                       {"Name": "pseudo", "Trigger": "StableStudy", "Destinations": ["pseudo"], "Pseudonymize": "p"}]},
            extra={"DicomModalities": {"plain": plain.modality, "pseudo": pseudo.modality}})
        node.environment["TCP_NODELAY"] = None
        node.start()
        assert orthanc_server_nodelay(node)
        storescu(node.dicom_port, write_instances(tmp_path / "in", 12, size=16))
        wait_until(lambda: len(plain.uids()) == 12 and len(pseudo.uids()) == 12, 60, what="both routes delivered")
        assert plain.peers_nodelay and set(plain.peers_nodelay) == {True}, plain.peers_nodelay
        assert pseudo.peers_nodelay == [True]          # one storescu run for the study
        assert node.get("/courier/status")["orthanc_warnings"] == []
        assert "TCP_NODELAY was not set in Orthanc's environment: set to 1" in node.log_path.read_text()
        node.stop()
        node.environment["TCP_NODELAY"] = "0"
        node.start()
        assert not orthanc_server_nodelay(node)
        (warning,) = node.get("/courier/status")["orthanc_warnings"]
        assert "TCP_NODELAY='0'" in warning and "TCP_NODELAY=1" in warning
    finally:
        plain.close()
        pseudo.close()
