"""monitoring/: the Grafana dashboard and the Prometheus alert rules name metrics Courier publishes."""
import json
import re
from pathlib import Path

import yaml

from courier.config.parse import parse
from courier.store.records import NewTask
from courier.web.metrics import metric_values

MONITORING = Path(__file__).resolve().parents[2] / "monitoring"
ORTHANC_OWN = {"orthanc_storage_size_mb"}           # Orthanc's own metrics, also in its Prometheus output


def expressions() -> list[str]:
    dashboard = json.loads((MONITORING / "grafana-dashboard.json").read_text())
    found = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    rules = yaml.safe_load((MONITORING / "prometheus-alerts.yml").read_text())
    return found + [r["expr"] for g in rules["groups"] for r in g["rules"]]


def named(expr: str) -> tuple[set[str], set[str]]:
    """(plain metric names, name patterns {__name__=~"..."}) of a PromQL expression."""
    patterns = set(re.findall(r'__name__=~"([^"]+)"', expr))
    plain = set(re.findall(r"\b((?:courier|orthanc)_[a-z0-9_]+)\b", re.sub(r'\{[^}]*\}', "", expr)))
    return plain, patterns


def test_every_metric_the_monitoring_files_name_is_published(make_store, tmp_path):
    store = make_store()
    store.tasks.enqueue([NewTask("r", "pacs", "Instance", "i1")], received=1)
    store.nodes.record_echo("pacs", True, "ok", "courier")
    config = parse({"StorageDirectory": str(tmp_path), "DicomModalities": {"pacs": ["PACS", "127.0.0.1", 104]},
                    "Courier": {}}, str(tmp_path), str(tmp_path))
    published = set(metric_values(store, config))
    assert {"courier_queue_wait_seconds", "courier_received_instances_this_hour", "courier_latency_p95_seconds",
            "courier_node_up_pacs", "courier_storage_free_bytes", "courier_delivered_instances_pacs"} <= published
    for expr in expressions():
        plain, patterns = named(expr)
        assert plain - ORTHANC_OWN <= published, (expr, plain - published)
        for pattern in patterns:
            assert any(re.fullmatch(pattern, name) for name in published), (expr, pattern)
