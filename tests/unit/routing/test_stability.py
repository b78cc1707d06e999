"""When a pending series or study is complete for a route (pure), and the store's record of
arrivals and completions: timers survive a reopening, each completion happens once."""
import pytest

from conftest import Clock
from courier.config.routes import CompleteWhen, Route
from courier.routing.stability import due_at, holds, why_complete
from courier.store.records import Arrival, NewTask, Pending


def route(**kwargs):
    return Route("r", kwargs.pop("trigger", "StableStudy"), (), ("d",), **kwargs)


def pending(**kwargs):
    values = dict(level="Study", resource_id="st", study_id="st", instances=3, new_instances=3, first_at=100.0,
                  last_at=110.0, last_seq=3, routed_seq=0, forced_at=None, modalities=("CT",),
                  series_descriptions=("Axial",))
    values.update(kwargs)
    return Pending(**values)


def test_quiet_for_stable_after_seconds():
    r = route(stable_after=10)
    assert why_complete(r, pending(), 119.9) is None
    assert why_complete(r, pending(), 120.0) == "quiet"
    assert due_at(r, pending()) == 120.0


def test_force_after_seconds_even_when_not_quiet():
    r = route(stable_after=60, force_after=15)
    assert why_complete(r, pending(last_at=114), 114.5) is None
    assert why_complete(r, pending(last_at=114), 115.0) == "force-after"
    assert due_at(r, pending(last_at=114)) == 115.0


def test_forced_only_for_what_arrived_before_the_force():
    r = route(stable_after=60)
    assert why_complete(r, pending(forced_at=105.0), 106) == "forced"
    assert why_complete(r, pending(forced_at=90.0), 106) is None      # forced before these instances came


@pytest.mark.parametrize("when,there", [
    (CompleteWhen(modalities=("CT", "MR")), False),
    (CompleteWhen(modalities=("ct",)), True),
    (CompleteWhen(series_descriptions=("ax*",)), True),
    (CompleteWhen(series_descriptions=("ax*", "cor*")), False),
    (CompleteWhen(), False),
])
def test_complete_when_needs_every_listed_series(when, there):
    assert holds(when, pending()) is there
    assert (why_complete(route(stable_after=60, complete_when=when), pending(), 111) == "complete") is there


def arrival(n, series="se1"):
    return Arrival(f"i{n}", series, "st", f"1.2.{n}", 10, "CT", "Axial", n)


def test_arrivals_are_recorded_with_the_cursor_and_completions_happen_once(make_store):
    clock = Clock()
    store = make_store(clock)
    store.tasks.enqueue([], cursor=("changes", 2), arrivals=[arrival(1), arrival(2)])
    clock.now += 5
    reopened = make_store(clock)                                # a restart: the times are in the store
    (study,) = reopened.completions.pending("r", "Study")
    assert (study.instances, study.first_at, study.last_at, study.modalities) == (2, 1000.0, 1000.0, ("CT",))
    assert reopened.tasks.cursor("changes") == 2
    ids = reopened.completions.complete("r", study, [NewTask("r", "d", "Study", "st")], "quiet")
    assert len(ids) == 1 and reopened.tasks.get(ids[0]).expected == 2
    assert reopened.completions.complete("r", study, [NewTask("r", "d", "Study", "st")], "quiet") is None
    assert reopened.completions.pending("r", "Study") == []
    store.tasks.enqueue([], cursor=("changes", 3), arrivals=[arrival(3)])       # a late instance
    (late,) = store.completions.pending("r", "Study")
    assert (late.new_instances, late.routed_seq) == (1, 2)
    (again,) = store.completions.complete("r", late, [NewTask("r", "d", "Study", "st")], "quiet")
    assert [i.sop_instance_uid for i in store.tasks.manifests([again])[again]] == ["1.2.3"]
    assert store.completions.pending("r", "Series") != []      # each route and level keeps its own mark


def test_routed_arrivals_are_pruned_and_a_late_one_still_goes_alone(make_store):
    clock = Clock()
    store = make_store(clock)
    store.tasks.enqueue([], arrivals=[arrival(1), arrival(2)])
    (study,) = store.completions.pending("r", "Study")
    assert store.completions.prune([], ["r"], older_than=clock.now + 1) == 0      # not routed yet: kept
    store.completions.complete("r", study, [], "quiet")
    assert store.completions.prune(["s"], ["r"], older_than=clock.now + 1) == 0   # the series route has not routed them
    assert store.completions.prune([], ["r"], older_than=clock.now - 1) == 0      # too recent
    assert store.completions.prune([], ["r"], older_than=clock.now + 1) == 2
    store.tasks.enqueue([], arrivals=[arrival(3)])
    (late,) = store.completions.pending("r", "Study")
    assert (late.instances, late.new_instances) == (3, 1)
    (task,) = store.completions.complete("r", late, [NewTask("r", "d", "Study", "st")], "quiet")
    assert [i.sop_instance_uid for i in store.tasks.manifests([task])[task]] == ["1.2.3"]
