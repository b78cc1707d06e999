"""Waiting for an Orthanc store job costs an HTTP call a poll (about 0.4 ms of CPU on both sides):
the sender polls a batch first when batches of its length lately took about that long, instead
of from 10 ms on. A stand-in of Orthanc's jobs API on loopback counts the polls."""
from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from courier.config.nodes import Node
from courier.delivery.orthanc_senders import OrthancRouteSender
from courier.orthanc_rest import OrthancRest
from courier.store.records import ManifestItem

JOB_SECONDS = 0.02      # what an instance takes the stand-in


class JobsApi:
    """POST .../store starts a job that succeeds after JOB_SECONDS per resource; GET /jobs/{id} answers."""

    def __init__(self) -> None:
        self.polls = 0
        self.jobs: dict[str, float] = {}
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def _answer(self, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                job = f"job-{len(api.jobs)}"
                api.jobs[job] = time.monotonic() + JOB_SECONDS * len(body["Resources"])
                self._answer({"ID": job})

            def do_GET(self) -> None:
                api.polls += 1
                done = time.monotonic() >= api.jobs[self.path.rsplit("/", 1)[1]]
                self._answer({"State": "Success" if done else "Running"})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def api():
    server = JobsApi()
    yield server
    server.close()


def items(n: int) -> list[ManifestItem]:
    return [ManifestItem(f"i{k}", f"1.2.{k}", 100) for k in range(n)]


def test_the_first_batch_is_polled_from_10_ms_on_the_next_ones_when_they_should_be_done(api):
    sender = OrthancRouteSender(OrthancRest(api.url), Node("dest", "dicom", aet="DEST", host="127.0.0.1", port=1),
                                "COURIER", 30)
    assert sender.send(items(10)) == {f"i{k}": None for k in range(10)}     # 0.2 s: polled at 10, 30, 70, 150, 250 ms
    first = api.polls
    assert first >= 4
    polls = []
    for _ in range(4):
        before = api.polls
        assert all(f is None for f in sender.send(items(10)).values())
        polls.append(api.polls - before)
    assert max(polls[1:]) <= 3 and sum(polls) < 4 * first, (first, polls)


def test_a_cancel_is_still_heard_within_the_first_wait(api):
    rest = OrthancRest(api.url)
    started = time.monotonic()
    rest.run_job("/modalities/dest/store", {"Resources": ["a"]}, lambda: False, expected=30.0)
    assert time.monotonic() - started < 1.0          # the first poll waits FIRST_POLL_MAX at most
