"""A small OAuth2 token server and a reverse proxy that checks bearer tokens, for the DICOMweb
authorization tests: both http.server on loopback, each in a thread of the test process."""
from __future__ import annotations

import base64
import json
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Optional
from urllib.parse import parse_qs, urlsplit

import requests


class _Server:
    def __init__(self, handler: type) -> None:
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.httpd.owner = self
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class _TokenHandler(BaseHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        server: TokenServer = self.server.owner
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
        form = {k: v[0] for k, v in parse_qs(body).items()}
        basic = self.headers.get("Authorization", "")
        if basic.startswith("Basic "):
            client_id, _, secret = base64.b64decode(basic[6:]).decode().partition(":")
            form.setdefault("client_id", client_id)
            form.setdefault("client_secret", secret)
        with server.lock:
            server.requests.append(form)
        if form.get("grant_type") != "client_credentials":
            return self._answer(400, {"error": "unsupported_grant_type"})
        if (form.get("client_id"), form.get("client_secret")) != (server.client_id, server.client_secret):
            return self._answer(401, {"error": "invalid_client"})
        token = secrets.token_urlsafe(24)
        with server.lock:
            server.issued[token] = time.monotonic() + server.expires_in
        self._answer(200, {"access_token": token, "token_type": "Bearer", "expires_in": server.expires_in,
                           **({"scope": form["scope"]} if "scope" in form else {})})

    def _answer(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class TokenServer(_Server):
    """Client-credentials grant at /token; tokens live `expires_in` seconds; counts requests."""

    def __init__(self, client_id: str, client_secret: str, expires_in: int = 3) -> None:
        self.client_id, self.client_secret, self.expires_in = client_id, client_secret, expires_in
        self.lock = threading.Lock()
        self.requests: list[dict] = []
        self.issued: dict[str, float] = {}
        super().__init__(_TokenHandler)

    @property
    def token_url(self) -> str:
        return self.url + "/token"

    @property
    def granted(self) -> int:
        with self.lock:
            return len(self.issued)

    def valid(self, token: str) -> bool:
        with self.lock:
            return self.issued.get(token, 0) > time.monotonic()


HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "content-length", "host", "authorization",
               "accept-encoding"}
QIDO_ENDS = ("/studies", "/series", "/instances")


class _ProxyHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:
        pass

    def _handle(self) -> None:
        proxy: AuthProxy = self.server.owner
        body = self._body()
        header = self.headers.get("Authorization", "")
        token = header[7:] if header.startswith("Bearer ") else None
        accepted = token is not None and proxy.accepts(token)
        with proxy.lock:
            proxy.seen.append((self.command, self.path, token, accepted))
        if not accepted:
            data = b'{"error": "invalid_token"}'
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Bearer error="invalid_token"')
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_HEADERS}
        upstream = requests.request(self.command, proxy.upstream + self.path, data=body, headers=headers, timeout=120)
        data = upstream.content
        split = urlsplit(self.path)
        if proxy.cap and self.command == "GET" and split.path.endswith(QIDO_ENDS) and upstream.status_code == 200:
            answers = json.loads(data or b"[]")
            with proxy.lock:
                proxy.qido.append((split.path, parse_qs(split.query), len(answers)))
            data = json.dumps(answers[:proxy.cap]).encode()
        self.send_response(upstream.status_code)
        for name, value in upstream.headers.items():
            if name.lower() not in HOP_HEADERS | {"content-encoding"}:
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> bytes:
        if "chunked" not in self.headers.get("Transfer-Encoding", "").lower():
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))
        parts = []
        while True:                      # orthanc-dicomweb's STOW-RS client sends chunks
            size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass
                return b"".join(parts)
            parts.append(self.rfile.read(size))
            self.rfile.readline()

    do_GET = do_POST = do_PUT = do_DELETE = _handle


class AuthProxy(_Server):
    """In front of an Orthanc: 401 unless the request bears a token `accepts`; then forwarded.
    `cap`: QIDO answers are cut to that many (limit and offset are passed on to Orthanc, which
    honours them), like a server that caps its answers."""

    def __init__(self, upstream: str, accepts: Callable[[str], bool], cap: Optional[int] = None) -> None:
        self.upstream, self.accepts, self.cap = upstream.rstrip("/"), accepts, cap
        self.lock = threading.Lock()
        self.seen: list[tuple] = []
        self.qido: list[tuple] = []
        super().__init__(_ProxyHandler)

    def refused(self) -> int:
        with self.lock:
            return sum(1 for *_, ok in self.seen if not ok)

    def forwarded(self, what: str = "") -> int:
        with self.lock:
            return sum(1 for method, path, _, ok in self.seen if ok and what in f"{method} {path}")

