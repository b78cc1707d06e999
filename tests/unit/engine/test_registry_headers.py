"""engine.runtime: a DICOMweb server's entry in Orthanc's registry gets the extra headers (tokens)."""
from types import SimpleNamespace

from courier.engine.runtime import RuntimeConfig

FULL = {"DicomWeb": {"Servers": {
    "web": {"Url": "http://h/dicom-web/", "Username": "u", "Password": "p", "HttpHeaders": {"X-Site": "a"}},
    "plain": ["http://other/dicom-web/"]}},
    "OrthancPeers": {"peer": {"Url": "http://peer/"}}}


class Rest:
    def __init__(self):
        self.puts = []

    def put_json(self, path, body):
        self.puts.append((path, body))

    def get_json(self, path):
        return []


def runtime_with(rest):
    runtime = RuntimeConfig({}, "/etc", "/repo", "host", store=None, rest=rest)
    runtime.extra_headers = lambda node_id: {"Authorization": "Bearer t1"} if node_id == "web" else {}
    runtime.current = SimpleNamespace(full=FULL)
    return runtime


def test_a_registry_sync_merges_the_extra_headers_into_the_entry():
    rest = Rest()
    runtime_with(rest)._sync_registries(None, FULL)
    bodies = dict(rest.puts)
    assert bodies["/dicom-web/servers/web"] == {"Url": "http://h/dicom-web/", "Username": "u", "Password": "p",
                                                 "HttpHeaders": {"X-Site": "a", "Authorization": "Bearer t1"}}
    assert bodies["/dicom-web/servers/plain"] == {"Url": "http://other/dicom-web/"}
    assert bodies["/peers/peer"] == {"Url": "http://peer/"}
    assert FULL["DicomWeb"]["Servers"]["web"]["HttpHeaders"] == {"X-Site": "a"}     # the configuration is untouched


def test_a_renewed_token_puts_the_whole_entry_again():
    rest = Rest()
    runtime = runtime_with(rest)
    assert runtime.set_node_headers("web") is True
    assert rest.puts == [("/dicom-web/servers/web", {"Url": "http://h/dicom-web/", "Username": "u", "Password": "p",
                                                     "HttpHeaders": {"X-Site": "a", "Authorization": "Bearer t1"}})]
    assert runtime.set_node_headers("peer") is False and runtime.set_node_headers("gone") is False
