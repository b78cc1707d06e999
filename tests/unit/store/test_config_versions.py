"""The versions of the runtime configuration, on both back-ends: numbered, never overwritten by a
stale change, an unchanged document is no new version, audited with the paths that changed."""
import threading

import pytest

from conftest import Clock
from courier.config.runtime import diff
from courier.store.config_versions import ConfigConflict

DOC = {"Courier": {"Routes": [{"Name": "r", "Destinations": ["a"]}]}, "DicomModalities": {}, "Scripts": {}}


def edited(**route):
    return {**DOC, "Courier": {"Routes": [{"Name": "r", **route}]}}


def test_versions_are_numbered_audited_and_a_stale_base_is_refused(make_store):
    clock = Clock()
    store = make_store(clock)
    assert store.config_versions.latest() is None and store.config_versions.latest_number() == 0
    first = store.config_versions.add(DOC, "orthanc.json", "orthanc.json", "read", seed=("a", "s1"))
    assert (first.version, first.source) == (1, "orthanc.json")
    assert store.config_versions.seed_of("a") == "s1" and store.config_versions.seed_of("b") is None
    clock.now += 10
    new = edited(Destinations=["b"])
    second = store.config_versions.add(new, "alice", "api", "to b", base=1, changes=diff(DOC, new))
    assert second.version == 2
    with pytest.raises(ConfigConflict) as refused:
        store.config_versions.add(edited(Destinations=["c"]), "bob", "api", base=1)
    assert refused.value.latest == 2
    assert store.config_versions.add(new, "alice", "api").version == 2          # unchanged: no new version
    # router b's orthanc.json says what the latest says: no new version, but b's seed is recorded
    assert store.config_versions.add(new, "orthanc.json", "orthanc.json", seed=("b", "s2")).version == 2
    assert store.config_versions.seed_of("b") == "s2" and store.config_versions.seed_of("a") == "s1"
    again = make_store(clock)                                                  # another process, same database
    latest = again.config_versions.latest()
    assert (latest.version, latest.actor, latest.comment, latest.document) == (2, "alice", "to b", new)
    assert [v.version for v in again.config_versions.list()] == [2, 1]
    assert again.config_versions.get(1).document == DOC and again.config_versions.get(9) is None
    total, events = again.audit.entries(action="config-changed")
    assert total == 2 and any(e["detail"]["version"] == 2 and
                              e["detail"]["changes"] == ["changed Courier.Routes.r.Destinations"] for e in events)


def test_two_writers_from_the_same_base_make_one_version(make_store):
    store = make_store()
    store.config_versions.add(DOC, "orthanc.json", "orthanc.json", seed=("a", "s"))
    outcomes = []

    def change(name):
        other = make_store()
        try:
            outcomes.append(other.config_versions.add(edited(Destinations=[name]), name, "api", base=1).version)
        except ConfigConflict:
            outcomes.append("conflict")
    threads = [threading.Thread(target=change, args=(n,)) for n in ("a2", "b2")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes, key=str) == [2, "conflict"]
    assert store.config_versions.latest_number() == 2
