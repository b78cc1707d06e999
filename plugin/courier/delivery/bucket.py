"""Bucket destinations: each instance one object in an S3-compatible store (AWS S3, MinIO, Ceph,
GCS's S3 interoperability) with boto3, at <Prefix><Layout>, acknowledged only when a HEAD of the
object answers the expected size and checksum.

Small instances go in one `put_object`, those of MultipartThresholdMB or more in a multipart
upload (boto3's TransferConfig, parts of that size). Every upload asks the store for a SHA-256
(`ChecksumAlgorithm`: checked by the store on the way in, per part for a multipart upload) and the
HEAD's `ChecksumSHA256` must be the instance's (a multipart upload's is the SHA-256 of its parts'
SHA-256s). A store that answers no checksum (an older S3 implementation) is checked on its ETag,
the MD5 of the bytes (of the parts' MD5s, with "-N", for a multipart upload); one that answers
neither cannot be checked, and nothing is reported delivered there.

boto3's own retries are off: a failed upload is a failed attempt of the task, retried by the
engine like any other (courier.errors.bucket_failure decides what a failure means). The keys are
never logged or put in a reason.
"""
from __future__ import annotations

import base64
import hashlib
import io
import logging
import re
import threading
from typing import Any, Callable, Optional, Sequence

from courier.config.destinations import Bucket
from courier.delivery.layout import layout_tags, relative_path
from courier.delivery.nifti import Converter, by_series
from courier.delivery.sender import Check, Failed, FileItem, Report, failure, never, send_each
from courier.errors import Cancelled, DeliveryError, Refused, bucket_failure
from courier.orthanc_rest import OrthancRest
from courier.store.records import ManifestItem

for _name in ("boto3", "botocore", "s3transfer"):      # their DEBUG output holds signed headers
    logging.getLogger(_name).setLevel(logging.WARNING)

_MD5 = re.compile(r"^[0-9a-f]{32}(-\d+)?$")


def object_key(bucket: Bucket, data: bytes) -> str:
    """<Prefix><Layout filled with the instance's tags>: the same components as a folder's path."""
    return bucket.prefix + relative_path(bucket.layout, layout_tags(data))


def part_size(threshold: int, size: int) -> int:
    """The size of each part boto3 uploads (its ChunksizeAdjuster: 5 MiB to 5 GiB, 10,000 parts at most)."""
    from s3transfer.utils import ChunksizeAdjuster

    return ChunksizeAdjuster().adjust_chunksize(threshold, size)


def expected_checksums(data: bytes, part: Optional[int]) -> tuple[set, str]:
    """(the ChecksumSHA256 values the store may answer, the ETag it may answer) for these bytes,
    sent whole (`part` None) or in parts of `part` bytes."""
    whole = hashlib.sha256(data).digest()
    if part is None:
        return {base64.b64encode(whole).decode()}, hashlib.md5(data).hexdigest()
    parts = [data[i:i + part] for i in range(0, len(data), part)]
    composite = hashlib.sha256(b"".join(hashlib.sha256(p).digest() for p in parts)).digest()
    etag = hashlib.md5(b"".join(hashlib.md5(p).digest() for p in parts)).hexdigest() + f"-{len(parts)}"
    return {base64.b64encode(composite).decode(), base64.b64encode(whole).decode()}, etag


def verify(head: dict, data: bytes, part: Optional[int], where: str) -> None:
    """Raise Refused unless the HEAD answers the size and checksum of `data`."""
    size = head.get("ContentLength")
    if size != len(data):
        raise Refused(f"{where} holds {size} bytes after the upload, not {len(data)}")
    sha256s, etag = expected_checksums(data, part)
    answered = head.get("ChecksumSHA256")
    if answered:
        if answered.split("-", 1)[0] not in sha256s:
            raise Refused(f"{where}: the store's SHA-256 {answered} is not the instance's")
        return
    tag = str(head.get("ETag") or "").strip('"')
    if not _MD5.match(tag):
        raise Refused(f"{where}: the store answers neither a SHA-256 nor an MD5 ETag, the upload cannot be checked",
                      retriable=False)
    if tag != etag:
        raise Refused(f"{where}: the store's ETag {tag} is not the instance's MD5 {etag}")


class BucketSender:
    """One object per instance, uploaded and then checked with a HEAD."""

    def __init__(self, rest: Optional[OrthancRest], bucket: Bucket, timeout: float = 10.0,
                 client_factory: Optional[Callable[[], Any]] = None) -> None:
        self.rest, self.bucket, self.timeout = rest, bucket, timeout
        self._make_client = client_factory or self._new_client
        self._client: Any = None
        self._lock = threading.Lock()

    # -- the store ------------------------------------------------------------------------------
        self.converter = Converter(f"Courier.Buckets.{bucket.id}") if bucket.convert == "NIfTI" else None
    def _new_client(self) -> Any:
        import boto3
        from botocore.config import Config

        bucket = self.bucket
        config = Config(retries={"total_max_attempts": 1, "mode": "standard"}, connect_timeout=self.timeout,
                        read_timeout=max(60.0, self.timeout), user_agent_extra="Courier",
                        request_checksum_calculation="when_required", response_checksum_validation="when_required",
                        s3={"addressing_style": "path"} if bucket.endpoint else {})
        # a session of its own: boto3's default session is not thread-safe, and sharing it would share credentials
        session = boto3.session.Session(aws_access_key_id=bucket.access_key, aws_secret_access_key=bucket.secret_key,
                                        region_name=bucket.region or "us-east-1")
        return session.client("s3", endpoint_url=bucket.endpoint, config=config)

    def client(self) -> Any:
        with self._lock:
            if self._client is None:
                self._client = self._make_client()
            return self._client

    def _redact(self, text: str) -> str:
        for secret in (self.bucket.access_key, self.bucket.secret_key):
            if secret:
                text = text.replace(secret, "***")
        return text

    def _error(self, exc: Exception, where: str) -> DeliveryError:
        """A boto3 exception as Courier's (courier.errors.bucket_failure decides)."""
        from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, ParamValidationError

        cause: Optional[BaseException] = exc
        while cause is not None and not isinstance(cause, (ClientError, BotoCoreError)):
            cause = cause.__cause__ or cause.__context__
        if isinstance(cause, ClientError):
            error, meta = cause.response.get("Error") or {}, cause.response.get("ResponseMetadata") or {}
            status = meta.get("HTTPStatusCode")
            code = str(error.get("Code") or "")
            message = str(error.get("Message") or "")
            if code.isdigit():                  # a HEAD's error has no body: only its status
                code, message = "", message or f"HTTP {status}"
            if status == 404 and code in ("", "NoSuchKey") and cause.operation_name == "HeadObject":
                result: DeliveryError = Refused("the object is not there after the upload")
            else:
                result = bucket_failure(status, code, message)
        elif isinstance(cause, (NoCredentialsError, ParamValidationError)):
            result = DeliveryError(str(cause), retriable=False)
        else:                                   # no answer: refused connection, timeout, reset
            result = bucket_failure(None, "", str(cause or exc))
        kind = type(result)
        text = self._redact(f"bucket {self.bucket.id}: {result} ({where})")
        return kind(text, retriable=result.retriable) if kind is not Cancelled else result

    def upload(self, data: bytes, key: Optional[str] = None, content_type: str = "application/dicom") -> str:
        """Upload one instance (or, with `key`, one file of a NIfTI conversion) and check it; its
        key. Raises DeliveryError (Refused: this one only)."""
        if key is None:
            try:
                key = object_key(self.bucket, data)
            except Exception as exc:               # not DICOM: nothing to name it with
                raise Refused(f"bucket {self.bucket.id}: cannot read the instance's tags: {exc}", retriable=False) from None
        where = f"s3://{self.bucket.bucket}/{key}"
        threshold = self.bucket.multipart_threshold
        extra = {"ContentType": content_type, "ChecksumAlgorithm": "SHA256"}
        try:
            client = self.client()
            if len(data) < threshold:
                client.put_object(Bucket=self.bucket.bucket, Key=key, Body=data, **extra)
                part = None
            else:
                from boto3.s3.transfer import TransferConfig

                part = part_size(threshold, len(data))
                client.upload_fileobj(io.BytesIO(data), self.bucket.bucket, key, ExtraArgs=extra,
                                      Config=TransferConfig(multipart_threshold=threshold, multipart_chunksize=part,
                                                            use_threads=False))
            head = client.head_object(Bucket=self.bucket.bucket, Key=key, ChecksumMode="ENABLED")
        except DeliveryError:
            raise
        except Exception as exc:
            raise self._error(exc, where) from None
        try:
            verify(head, data, part, where)
        except Refused as exc:
            raise Refused(f"bucket {self.bucket.id}: {exc}", retriable=exc.retriable) from None
        return key

    # -- the Sender interface -----------------------------------------------------------------------
    def send(self, items: Sequence[ManifestItem], cancelled: Check = never) -> Report:
        """Originals read from Orthanc one at a time (a chunk of large instances is never all in memory)."""
        def read(item: ManifestItem) -> bytes:
            assert self.rest is not None
            return self.rest.instance_file(item.instance_id, item.size)
        return send_each([(item, b"") for item in items], self.upload, cancelled, read)

    def send_files(self, files: Sequence[FileItem], cancelled: Check = never, subfolder: str = "",
                   password: Optional[str] = None) -> Report:
        if self.converter is not None:
            return self._send_converted(files, cancelled)
        return send_each(files, self.upload, cancelled)

    @property
    def per_task(self) -> bool:
        """With Convert NIfTI the Deliverer gives it a whole task: a series is converted whole."""
        return self.converter is not None

    def _send_converted(self, files: Sequence[FileItem], cancelled: Check) -> Report:
        """Each series as dcm2niix made it, at <Prefix><Layout><suffix> (.nii.gz, .json...)."""
        report: Report = {}
        for uid, members in by_series(files).items():
            if cancelled():
                report.update({item.instance_id: Failed("not sent: cancelled", interrupted=True) for item, _, _ in members})
                continue
            converted = self.converter.convert(uid, [data for _, data, _ in members])
            if not isinstance(converted, Failed):
                base = self.bucket.prefix + relative_path(self.bucket.layout, members[0][2])
                try:
                    for suffix, data in converted.items():
                        self.upload(data, base + suffix, "application/json" if suffix.endswith(".json") else
                                    "application/gzip" if suffix.endswith(".gz") else "application/octet-stream")
                except Refused as exc:
                    converted = failure(exc)
                except DeliveryError as exc:
                    converted = Failed(str(exc), permanent=not exc.retriable, down=True)
            report.update({item.instance_id: converted if isinstance(converted, Failed) else None
                           for item, _, _ in members})
        return report
