"""courier.host's HTTP facade, with a stand-in for the `orthanc` module: how answers reach Orthanc
1.10.1 (405 through SendMethodNotAllowed), the incoming-HTTP filter, GET arguments, and the
threads REST handlers run on. tests/integration/test_api_answers.py checks the same against a
real Orthanc."""
import ctypes
import threading

import pytest

from courier.host import BigStackRunner, Host, HttpRequest, HttpResponse, decode_query
from courier.web.guard import refused_unread


class Output:
    def __init__(self):
        self.calls = []

    def __getattr__(self, name):
        return lambda *args: self.calls.append((name, *args))


class FakeOrthanc:
    class HttpMethod:
        GET, POST, PUT, DELETE = 1, 2, 3, 4

    def __init__(self):
        self.rest = self.filter = None

    def GetConfiguration(self):                                 # noqa: N802 - Orthanc's names
        return '{"HttpThreadsCount": 4}'

    def RegisterRestCallback(self, pattern, callback):          # noqa: N802
        self.rest = callback

    def RegisterIncomingHttpRequestFilter(self, callback):      # noqa: N802
        self.filter = callback


def served(response=None, handler=None):
    orthanc = FakeOrthanc()
    Host(orthanc).serve("/courier/", handler or (lambda request: response))
    return orthanc


def test_405_goes_through_send_method_not_allowed_with_the_allowed_methods():
    orthanc = served(HttpResponse(405, b'{"error": "x", "status": 405}', headers={"Allow": "GET, POST"}))
    output = Output()
    orthanc.rest(output, "/courier/tasks", method="PUT")
    assert output.calls == [("SendMethodNotAllowed", "GET, POST")]      # never SendHttpStatus(405): Orthanc throws


def test_other_errors_and_answers_keep_their_json_body():
    output = Output()
    served(HttpResponse(413, b'{"error": "big", "status": 413}')).rest(output, "/courier/jobs", method="POST")
    assert output.calls == [("SetHttpHeader", "Content-Type", "application/json"),
                            ("SendHttpStatus", 413, '{"error": "big", "status": 413}', 31)]
    output = Output()
    served(HttpResponse(200, b"{}")).rest(output, "/courier/jobs", method="GET")
    assert output.calls == [("AnswerBuffer", b"{}", "application/json")]


def test_get_arguments_arrive_percent_decoded():
    seen = []
    orthanc = served(handler=lambda request: seen.append(request.query) or HttpResponse(200, b"{}"))
    orthanc.rest(Output(), "/courier/tasks", method="GET", get={"route": "to%20dest", "actor": "jos%C3%A9+x", "bad": "%FF"})
    assert seen == [{"route": "to dest", "actor": "jos\u00e9 x", "bad": "\udcff"}]      # the web layer refuses "\udcff"
    assert decode_query({"a%3Db": "%25"}) == {"a=b": "%"}


def test_the_filter_refuses_multipart_posts_under_courier_only():
    orthanc = FakeOrthanc()
    Host(orthanc).filter_requests("/courier/", refused_unread)
    form = {"content-type": "multipart/form-data; boundary=x"}
    assert orthanc.filter("/courier/jobs/batch", method=2, ip="127.0.0.1", headers=form) is False
    assert orthanc.filter("/courier/jobs/batch", method=2, headers={"content-type": "Multipart/Form-Data"}) is False
    assert orthanc.filter("/courier/jobs", method=2, ip="127.0.0.1", headers={"content-type": "application/json"}) is True
    assert orthanc.filter("/courier/jobs", method=3, ip="127.0.0.1", headers=form) is True          # PUT: Courier's 405
    assert orthanc.filter("/courier/ui/", method=1, ip="127.0.0.1", headers={}, get={}) is True
    assert orthanc.filter("/instances", method=2, ip="127.0.0.1", headers=form) is True             # Orthanc's upload form


def test_a_filter_that_fails_refuses_only_courier_requests():
    orthanc = FakeOrthanc()
    Host(orthanc).filter_requests("/courier/", lambda method, uri, headers: 1 / 0)
    assert orthanc.filter("/courier/jobs", method=2, headers={}) is False
    assert orthanc.filter("/patients", method=2, headers={}) is True


def _stack_size() -> int:
    libc = ctypes.CDLL(None)
    libc.pthread_self.restype = ctypes.c_ulong
    attr = ctypes.create_string_buffer(256)
    assert libc.pthread_getattr_np(ctypes.c_ulong(libc.pthread_self()), attr) == 0
    address, size = ctypes.c_void_p(), ctypes.c_size_t()
    libc.pthread_attr_getstack(attr, ctypes.byref(address), ctypes.byref(size))
    libc.pthread_attr_destroy(attr)
    return size.value


def test_handlers_run_on_threads_with_a_big_stack_not_on_orthancs():
    # Orthanc 1.10.1's HTTP threads have 100 KiB of stack: json.loads of 530 nested arrays, or pydicom
    # reading sequences nested 200 deep, overflowed them and Orthanc segfaulted.
    seen = []

    def handler(request):
        seen.append((threading.current_thread().name, _stack_size()))
        return HttpResponse(200, b"{}")
    orthanc = served(handler=handler)
    small = []
    caller = threading.Thread(target=lambda: small.append(orthanc.rest(Output(), "/courier/x", method="GET")))
    previous = threading.stack_size(128 * 1024)
    try:
        caller.start()
    finally:
        threading.stack_size(previous)
    caller.join(10)
    assert seen and seen[0][0].startswith("courier-http-") and seen[0][1] >= 16 * 1024 * 1024


def test_the_runner_gives_back_results_and_exceptions_and_grows_to_its_limit():
    runner = BigStackRunner(most=2)
    assert runner.run(lambda a, b: a + b, 2, 3) == 5
    with pytest.raises(ZeroDivisionError):
        runner.run(lambda: 1 / 0)
    release, started = threading.Event(), threading.Semaphore(0)

    def slow():
        started.release()
        release.wait(10)
        return threading.current_thread().name
    names = []
    callers = [threading.Thread(target=lambda: names.append(runner.run(slow))) for _ in range(3)]
    for caller in callers:
        caller.start()
    assert started.acquire(timeout=5) and started.acquire(timeout=5)
    assert not started.acquire(timeout=0.3)             # the third waits: at most 2 threads
    release.set()
    for caller in callers:
        caller.join(10)
    assert len(names) == 3 and len(set(names)) == 2


def test_an_http_request_is_a_plain_record():
    request = HttpRequest("POST", "/courier/jobs", body=b"{}")
    assert request.parsed is None and request.query == {} and request.headers == {}


def test_the_filter_refuses_the_internal_traffic_route_to_every_client_however_it_is_written():
    orthanc = FakeOrthanc()
    Host(orthanc).filter_requests("/courier/", refused_unread)
    json_type = {"content-type": "application/json"}
    for uri in ("/courier/traffic/events", "/courier//traffic/events", "/courier/traffic/events/",
                "/courier/traffic%2Fevents", "/courier/%74raffic/events", "/courier/Traffic/Events",
                "/courier/traffic%252Fevents"):
        assert orthanc.filter(uri, method=2, ip="127.0.0.1", headers=json_type) is False, uri
    assert orthanc.filter("/courier/traffic", method=1, ip="127.0.0.1", headers={}, get={}) is True
    assert orthanc.filter("/courier/traffic.csv", method=1, ip="127.0.0.1", headers={}, get={}) is True
