"""Import files in S3 (the imports bucket):

| object            | key                                              |
|-------------------|--------------------------------------------------|
| the upload        | `imports/{org}/{import}/upload`                  |
| a chunk of a run  | `imports/{org}/{import}/{run}/chunks/{n}.jsonl`  |
| rejected rows     | `imports/{org}/{import}/{run}/errors/{part}.csv` |
| the error report  | `imports/{org}/{import}/{run}/errors.csv`        |

Chunks are JSON lines of already validated records, written once by the split and read by the chunk
workers; a retried worker reads the same chunk. The bucket's lifecycle rule removes everything after 30
days, and a run's chunks after 7.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from typing import Any, BinaryIO

from audience import aws

URL_EXPIRES_SECONDS = 15 * 60
UPLOAD_EXPIRES_SECONDS = 60 * 60
REPORT_CONTENT_TYPE = "text/csv; charset=utf-8"
_PART_BYTES = 8 * 1024 * 1024


def upload_key(org_id: str, import_id: str) -> str:
    return f"imports/{org_id}/{import_id}/upload"


def run_prefix(org_id: str, import_id: str, run_id: str) -> str:
    return f"imports/{org_id}/{import_id}/{run_id}"


def chunk_key(org_id: str, import_id: str, run_id: str, number: int) -> str:
    return f"{run_prefix(org_id, import_id, run_id)}/chunks/{number:05d}.jsonl"


def errors_part_key(org_id: str, import_id: str, run_id: str, part: str) -> str:
    return f"{run_prefix(org_id, import_id, run_id)}/errors/{part}.csv"


def report_key(org_id: str, import_id: str, run_id: str) -> str:
    return f"{run_prefix(org_id, import_id, run_id)}/errors.csv"


class ImportFiles:
    """The imports bucket."""

    def __init__(self, bucket: str) -> None:
        self.bucket = bucket

    @property
    def _client(self) -> Any:
        return aws.signing_s3()

    # -- the upload ---------------------------------------------------------------------------------

    def upload_form(self, key: str, *, max_bytes: int) -> dict[str, Any]:
        """A presigned POST form for the upload: S3 itself refuses a file over `max_bytes`."""
        form = self._client.generate_presigned_post(
            Bucket=self.bucket,
            Key=key,
            Conditions=[["content-length-range", 1, max_bytes]],
            ExpiresIn=UPLOAD_EXPIRES_SECONDS,
        )
        return {"url": form["url"], "fields": form["fields"], "expires_in": UPLOAD_EXPIRES_SECONDS}

    def put(self, key: str, data: bytes | BinaryIO) -> None:
        self._client.put_object(Bucket=self.bucket, Key=key, Body=data)

    def size(self, key: str) -> int | None:
        """The object's size, or None when nothing was uploaded."""
        from botocore.exceptions import ClientError

        try:
            return int(self._client.head_object(Bucket=self.bucket, Key=key)["ContentLength"])
        except ClientError as error:
            if error.response["Error"]["Code"] in ("404", "NoSuchKey", "NotFound"):
                return None
            raise

    @contextlib.contextmanager
    def downloaded(self, key: str) -> Iterator[str]:
        """The object in a temporary local file (removed afterwards), streamed to disk."""
        handle, path = tempfile.mkstemp(prefix="import-", dir=os.environ.get("IMPORT_TMP_DIR"))
        try:
            with os.fdopen(handle, "wb") as out:
                body = self._client.get_object(Bucket=self.bucket, Key=key)["Body"]
                for block in iter(lambda: body.read(_PART_BYTES), b""):
                    out.write(block)
            yield path
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)

    # -- chunks -------------------------------------------------------------------------------------

    def put_chunk(self, key: str, records: list[dict[str, Any]]) -> None:
        body = "\n".join(json.dumps(r, ensure_ascii=False, separators=(",", ":")) for r in records)
        self._client.put_object(Bucket=self.bucket, Key=key, Body=body.encode("utf-8"))

    def chunk(self, key: str) -> list[dict[str, Any]]:
        body = self._client.get_object(Bucket=self.bucket, Key=key)["Body"].read().decode("utf-8")
        return [json.loads(line) for line in body.split("\n") if line]

    # -- the error report ---------------------------------------------------------------------------

    def put_text(self, key: str, text: str) -> None:
        self._client.put_object(Bucket=self.bucket, Key=key, Body=text.encode("utf-8"), ContentType=REPORT_CONTENT_TYPE)

    def part_keys(self, prefix: str) -> list[str]:
        keys: list[str] = []
        paginator = self._client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
            keys.extend(o["Key"] for o in page.get("Contents", []))
        return sorted(keys)

    def concatenate(self, key: str, header: bytes, parts: list[str], *, filename: str) -> None:
        """Write `header` then every part, in order, as one object (a multipart upload; parts streamed)."""
        disposition = f'attachment; filename="{filename}"'
        upload = self._client.create_multipart_upload(
            Bucket=self.bucket, Key=key, ContentType=REPORT_CONTENT_TYPE, ContentDisposition=disposition
        )["UploadId"]
        try:
            done: list[dict[str, Any]] = []
            buffer = bytearray(header)
            for part in parts:
                body = self._client.get_object(Bucket=self.bucket, Key=part)["Body"]
                for block in iter(lambda b=body: b.read(_PART_BYTES), b""):
                    buffer += block
                    if len(buffer) >= _PART_BYTES:
                        done.append(self._part(key, upload, len(done) + 1, bytes(buffer)))
                        buffer.clear()
            if buffer or not done:
                done.append(self._part(key, upload, len(done) + 1, bytes(buffer)))
            self._client.complete_multipart_upload(
                Bucket=self.bucket, Key=key, UploadId=upload, MultipartUpload={"Parts": done}
            )
        except Exception:
            with contextlib.suppress(Exception):
                self._client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload)
            raise

    def _part(self, key: str, upload: str, number: int, data: bytes) -> dict[str, Any]:
        response = self._client.upload_part(Bucket=self.bucket, Key=key, UploadId=upload, PartNumber=number, Body=data)
        return {"PartNumber": number, "ETag": response["ETag"]}

    def delete_prefix(self, prefix: str) -> None:
        keys = self.part_keys(prefix)
        for start in range(0, len(keys), 1000):
            self._client.delete_objects(
                Bucket=self.bucket, Delete={"Objects": [{"Key": k} for k in keys[start : start + 1000]], "Quiet": True}
            )

    def url(self, key: str, *, expires_in: int = URL_EXPIRES_SECONDS) -> str:
        """A presigned GET URL of the file (see audience.aws.presigned_get)."""
        return aws.presigned_get(self.bucket, key, expires_in)
