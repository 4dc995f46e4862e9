"""Export files in S3: streamed in parts (multipart upload) or put whole, downloaded by presigned URL."""

from __future__ import annotations

import contextlib
import json
from typing import Any

from botocore.exceptions import ClientError

from audience import aws

CONTENT_TYPE = "text/csv; charset=utf-8"
URL_EXPIRES_SECONDS = 15 * 60


def object_key(org_id: str, export_id: str) -> str:
    return f"exports/{org_id}/{export_id}.csv"


def _disposition(filename: str) -> str:
    return f'attachment; filename="{filename}"'


class ExportFiles:
    """The exports bucket."""

    def __init__(self, bucket: str) -> None:
        self.bucket = bucket

    @property
    def _client(self) -> Any:
        return aws.signing_s3()

    def put(self, key: str, data: bytes, *, filename: str) -> None:
        self._client.put_object(
            Bucket=self.bucket, Key=key, Body=data, ContentType=CONTENT_TYPE, ContentDisposition=_disposition(filename)
        )

    def begin(self, key: str, *, filename: str) -> str:
        """Start a multipart upload; returns its id."""
        response = self._client.create_multipart_upload(
            Bucket=self.bucket, Key=key, ContentType=CONTENT_TYPE, ContentDisposition=_disposition(filename)
        )
        return str(response["UploadId"])

    def part(self, key: str, upload_id: str, number: int, data: bytes) -> str:
        """Upload part `number` (1-based; every part but the last at least 5 MiB); returns its ETag."""
        response = self._client.upload_part(
            Bucket=self.bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=data
        )
        return str(response["ETag"])

    def complete(self, key: str, upload_id: str, parts: list[dict[str, Any]]) -> None:
        self._client.complete_multipart_upload(
            Bucket=self.bucket,
            Key=key,
            UploadId=upload_id,
            MultipartUpload={"Parts": [{"PartNumber": int(p["n"]), "ETag": p["etag"]} for p in parts]},
        )

    def abort(self, key: str, upload_id: str) -> None:
        """Abandon an upload (best effort: the bucket's lifecycle rule also cleans up after a day)."""
        with contextlib.suppress(ClientError):  # gone already, or not ours: the lifecycle rule has the last word
            self._client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)

    def url(self, key: str, *, expires_in: int = URL_EXPIRES_SECONDS) -> str:
        """A presigned GET URL of the file (see audience.aws.presigned_get)."""
        return aws.presigned_get(self.bucket, key, expires_in)


class ExportJobs:
    """Messages to the export queue: a new export, or a run's continuation."""

    def __init__(self, queue_url: str) -> None:
        self.queue_url = queue_url

    def send(self, message: dict[str, Any]) -> None:
        aws.client("sqs").send_message(QueueUrl=self.queue_url, MessageBody=json.dumps(message, sort_keys=True))
