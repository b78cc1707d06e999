"""S3 for the tests: moto's server (a real S3 implementation nobody here wrote) on a loopback port,
and a proxy in front of it that answers 503 to the first uploads it is told to fail, counting the
requests it saw, so that a test can watch a bucket fail and recover."""
from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Optional

from harness import free_port, wait_until


class S3Server:
    """moto's server (`moto_server`, a process of its own) on a free loopback port, with IAM
    authentication on: only the keys of its user `courier` (made at start, `access_key` and
    `secret_key`) are accepted, as on a real store. `client()` is a boto3 client of it."""

    def __init__(self) -> None:
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        # the first 3 requests (the user, its policy, its key) need no key; every later one does
        self.process = subprocess.Popen([str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p",
                                         str(port)], env=dict(os.environ, INITIAL_NO_AUTH_ACTION_COUNT="3"),
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        wait_until(lambda: _listening(port), 30, what="moto_server listening")
        iam = self.client(service="iam", access="A" * 20, secret="s" * 40)
        iam.create_user(UserName="courier")
        iam.put_user_policy(UserName="courier", PolicyName="all", PolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
        key = iam.create_access_key(UserName="courier")["AccessKey"]
        self.access_key, self.secret_key = key["AccessKeyId"], key["SecretAccessKey"]

    def client(self, url: Optional[str] = None, access: Optional[str] = None, secret: Optional[str] = None,
               service: str = "s3"):
        import boto3
        from botocore.config import Config

        access, secret = access or self.access_key, secret or self.secret_key
        return boto3.session.Session().client(
            service, endpoint_url=url or self.url, region_name="us-east-1", aws_access_key_id=access,
            aws_secret_access_key=secret, config=Config(retries={"total_max_attempts": 1}, s3={"addressing_style": "path"}))

    def create_bucket(self, name: str) -> None:
        self.client().create_bucket(Bucket=name)

    def objects(self, bucket: str, prefix: str = "") -> dict[str, bytes]:
        client = self.client()
        keys = [o["Key"] for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
                for o in page.get("Contents", [])]
        return {key: client.get_object(Bucket=bucket, Key=key)["Body"].read() for key in keys}

    def parts_count(self, bucket: str, key: str) -> int:
        """How many parts the object was uploaded in (1: a single put)."""
        head = self.client().head_object(Bucket=bucket, Key=key, PartNumber=1)
        return int(head.get("PartsCount") or 1)

    def write_keys(self, folder: Path) -> tuple[str, str]:
        """The keys in two files (as a deployment would keep them): their paths."""
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "access").write_text(self.access_key + "\n")
        (folder / "secret").write_text(self.secret_key + "\n")
        return str(folder / "access"), str(folder / "secret")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), 0.2).close()
        return True
    except OSError:
        return False


class FaultyProxy:
    """Forwards every request to `target`, except the first `fail_puts` uploads (PUT or POST of an
    object, not of a bucket), which get a 503 ServiceUnavailable as S3 answers it."""

    def __init__(self, target: str, fail_puts: int = 1) -> None:
        self.target = target.split("://", 1)[1]
        self.fail_puts, self.failed, self.requests = fail_puts, 0, []
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    data = b""
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                        chunk = self.rfile.read(size + 2)[:size]
                        if size == 0:
                            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                                pass
                            return data
                        data += chunk
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _handle(self) -> None:
                body = self._body()
                path = self.path.split("?", 1)[0]
                is_upload = self.command in ("PUT", "POST") and path.strip("/").count("/") >= 1
                with proxy._lock:
                    proxy.requests.append((self.command, self.path))
                    fail = is_upload and proxy.failed < proxy.fail_puts
                    proxy.failed += int(fail)
                if fail:
                    answer = (b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>ServiceUnavailable</Code>'
                              b"<Message>Please reduce your request rate.</Message></Error>")
                    self.send_response(503)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(answer)))
                    self.end_headers()
                    self.wfile.write(answer)
                    return
                connection = http.client.HTTPConnection(proxy.target, timeout=60)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("transfer-encoding", "content-length")}
                if body or self.command in ("PUT", "POST"):
                    headers["Content-Length"] = str(len(body))
                connection.request(self.command, self.path, body=body, headers=headers)
                response = connection.getresponse()
                data = response.read()
                self.send_response(response.status)
                for key, value in response.getheaders():
                    if key.lower() not in ("transfer-encoding", "content-length", "connection", "server", "date"):
                        self.send_header(key, value)
                length = response.getheader("Content-Length") if self.command == "HEAD" else None
                self.send_header("Content-Length", length or str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                connection.close()

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def uploads(self) -> list:
        return [r for r in self.requests if r[0] in ("PUT", "POST") and r[1].split("?")[0].strip("/").count("/") >= 1]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
