import pytest

from harness import Orthanc


class Cluster:
    """Starts Orthanc processes for one test and stops them all afterwards."""

    def __init__(self, workdir):
        self.workdir = workdir
        self.nodes: list[Orthanc] = []

    def orthanc(self, name, start=True, **kwargs) -> Orthanc:
        node = Orthanc(self.workdir, name, **kwargs)
        self.nodes.append(node)
        return node.start() if start else node

    def stop(self):
        for node in self.nodes:          # all at once: each Orthanc takes seconds to stop
            node.signal()
        for node in self.nodes:
            node.stop()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    cluster = item.funcargs.get("cluster") if hasattr(item, "funcargs") else None
    if report.failed and cluster is not None:
        for node in cluster.nodes:
            report.sections.append((f"log of {node.name}", node.log_tail(80)))


@pytest.fixture
def cluster(tmp_path):
    c = Cluster(tmp_path)
    yield c
    c.stop()
