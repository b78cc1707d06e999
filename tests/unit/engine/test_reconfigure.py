"""The running parts take a new configuration without losing what their threads wait on."""
from courier.config.parse import parse
from courier.engine.scheduler import Scheduler
from courier.engine.workers import Engine
from courier.routing.callers import CallerPolicy
from courier.routing.follower import ChangeFollower
from courier.store.store import Store


def config(tmp_path, routes):
    return parse({"DicomModalities": {"pacs": ["PACS", "127.0.0.1", 104], "b": ["B", "127.0.0.1", 105]},
                  "Courier": {"DatabasePath": str(tmp_path / "c.sqlite"), "Routes": routes}}, str(tmp_path), str(tmp_path))


def test_reconfigured_parts_keep_their_events_and_use_the_new_configuration(tmp_path):
    old = config(tmp_path, [{"Name": "r", "Destinations": ["pacs"]}])
    new = config(tmp_path, [{"Name": "r", "Destinations": ["b"]}, {"Name": "s", "Trigger": "StableStudy",
                                                                    "Destinations": ["pacs"]}])
    store = Store(str(tmp_path / "c.sqlite"))
    scheduler = Scheduler(old, store, None, "x:1")
    events = (scheduler._stop, scheduler._wake)
    scheduler.reconfigure(new)
    assert (scheduler._stop, scheduler._wake) == events and scheduler.runner.config is new
    scheduler.wake()
    engine = Engine(old, store, None, {})
    stop = engine._stop
    engine.reconfigure(new, {"b": object()}, {})
    assert engine._stop is stop and engine.config is new and set(engine.deliverer.senders) == {"b"}
    follower = ChangeFollower(store, None, old.routes, CallerPolicy("Any", {}), None)
    follower.reconfigure(new.routes, None)
    assert [r.destinations for r in follower.instance_routes] == [("b",)]
    assert follower.tracks_arrivals and follower.completer.stable == (new.routes[1],)
