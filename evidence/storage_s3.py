"""The S3-protocol backend of the evidence store (AWS S3, Alibaba OSS, Tencent COS, MinIO, Ceph RGW ...).

Keys are the store's content-addressed keys under an optional prefix. An upload is spooled to a local file
while it arrives (see evidence.storage), then sent with boto3's managed transfer: one PUT below the part size,
a multipart upload above it, reading each part from the file as it goes, so memory stays at a few parts per
upload whatever the file's size. A multipart upload left unfinished by a crash is aborted by the beat sweep.
"""
from __future__ import annotations

import time
from datetime import datetime, timezone
from pathlib import Path

import boto3
from boto3.exceptions import S3UploadFailedError
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from core.errors import ServiceUnavailable
from evidence.storage import INCOMING, StagedBlob, check_key, sweep_spool

_MISSING = {"404", "NoSuchKey", "NotFound"}
# Codes an S3 service answers when it is briefly unable to serve: the request is retried by the caller.
_BUSY = {"500", "502", "503", "504", "InternalError", "ServiceUnavailable", "SlowDown", "RequestTimeout"}


class StoreUnavailable(ServiceUnavailable):
    """The object store cannot be reached or is overloaded (HTTP 503, retried by phones and by Celery)."""

    code = "evidence_store_unavailable"
    detail = "The evidence store is briefly unavailable; nothing was stored. Retry shortly."


def _translate(exc: Exception, key: str) -> Exception:
    """A missing object reads as a missing file (as the local backend says); outages as a 503."""
    code = exc.response.get("Error", {}).get("Code", "") if isinstance(exc, ClientError) else ""
    if code in _MISSING:
        return FileNotFoundError(f"no blob {key}")
    if isinstance(exc, BotoCoreError) or code in _BUSY:
        return StoreUnavailable(retry_after_s=5, dependency="evidence_store")
    return exc  # credentials, permissions, a missing bucket: configuration faults, shown as they are


class S3BlobStore:
    """Blobs as objects in one bucket; the API's spool directory stays local to each API host."""

    def __init__(self, bucket: str, prefix: str, endpoint_url: str, region: str, addressing_style: str,
                 access_key_id: str, secret_access_key: str, part_mib: int, upload_concurrency: int,
                 spool_root: Path | str) -> None:
        self.bucket, self.prefix, self.spool = bucket, prefix, Path(spool_root) / INCOMING
        self.client = boto3.session.Session().client(
            "s3", endpoint_url=endpoint_url or None, region_name=region or None,
            aws_access_key_id=access_key_id or None, aws_secret_access_key=secret_access_key or None,
            config=Config(
                signature_version="s3v4", s3={"addressing_style": addressing_style},
                # boto3 >= 1.36 adds CRC checksums with aws-chunked bodies by default, which several
                # S3-compatible services (OSS, COS, older MinIO and Ceph) refuse: only when an API requires it.
                request_checksum_calculation="when_required", response_checksum_validation="when_required",
                retries={"mode": "standard", "max_attempts": 4}, connect_timeout=5, read_timeout=30,
                max_pool_connections=32))  # the API's 16 handler threads plus transfer threads
        part = part_mib * 2**20
        self.transfer = TransferConfig(multipart_threshold=part, multipart_chunksize=part,
                                       max_concurrency=upload_concurrency, use_threads=upload_concurrency > 1)

    def object_key(self, key: str) -> str:
        """The object's name in the bucket."""
        return self.prefix + check_key(key)

    def put(self, key: str, data: bytes, *, replace: bool = False) -> None:
        """Store bytes under the key (content-addressed: writing the same key twice writes the same bytes; an object
        is always written whole, so ``replace`` needs nothing more here)."""
        try:
            self.client.put_object(Bucket=self.bucket, Key=self.object_key(key), Body=data)
        except (BotoCoreError, ClientError) as exc:
            raise _translate(exc, key) from exc

    def get(self, key: str) -> bytes:
        """The blob's bytes (FileNotFoundError when there is none)."""
        try:
            return self.client.get_object(Bucket=self.bucket, Key=self.object_key(key))["Body"].read()
        except (BotoCoreError, ClientError) as exc:
            raise _translate(exc, key) from exc

    def exists(self, key: str) -> bool:
        """Whether the blob is stored."""
        try:
            self.client.head_object(Bucket=self.bucket, Key=self.object_key(key))
            return True
        except (BotoCoreError, ClientError) as exc:
            err = _translate(exc, key)
            if isinstance(err, FileNotFoundError):
                return False
            raise err from exc

    def stage(self, max_bytes: int) -> StagedBlob:
        """A new upload, spooled locally until it is accepted."""
        return StagedBlob(self.spool, max_bytes, self._keep_staged)

    def _keep_staged(self, staged: StagedBlob) -> None:
        if self.exists(staged.sha256):
            return
        try:  # returns once S3 has acknowledged the whole object (PUT or CompleteMultipartUpload): durable
            self.client.upload_file(str(staged.path), self.bucket, self.object_key(staged.sha256),
                                    Config=self.transfer)
        except (BotoCoreError, ClientError) as exc:
            raise _translate(exc, staged.sha256) from exc
        except S3UploadFailedError as exc:  # how s3transfer reports a failed part or completion
            raise StoreUnavailable(retry_after_s=5, dependency="evidence_store") from exc

    def sweep_incoming(self, older_than_s: float) -> int:
        """Remove this host's abandoned spool files and abort multipart uploads started longer ago than
        ``older_than_s`` (a crashed API process never completed them); returns how many went."""
        removed = sweep_spool(self.spool, older_than_s)
        cutoff = datetime.fromtimestamp(time.time() - older_than_s, timezone.utc)
        pages = self.client.get_paginator("list_multipart_uploads").paginate(Bucket=self.bucket, Prefix=self.prefix)
        for page in pages:
            for up in page.get("Uploads", []):
                if up["Initiated"] < cutoff:
                    self.client.abort_multipart_upload(Bucket=self.bucket, Key=up["Key"], UploadId=up["UploadId"])
                    removed += 1
        return removed

    def create_bucket(self) -> None:
        """Create the bucket if it is missing (development and tests; production buckets are provisioned)."""
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except ClientError:
            region = self.client.meta.region_name
            where = {} if region in (None, "us-east-1") else {
                "CreateBucketConfiguration": {"LocationConstraint": region}}
            self.client.create_bucket(Bucket=self.bucket, **where)
