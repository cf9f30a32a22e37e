"""Objects in an S3 bucket through boto3: AWS, MinIO or any S3-compatible service.

Atomic writes without a temporary key: S3 shows a multipart upload's object only when
CompleteMultipartUpload succeeds, and a single PUT is atomic too, so a writer sends its parts
under the final key and completes the upload at close; a reader sees the old object or the
whole new one. An abandoned write aborts its upload. A writer that died without aborting leaves
an invisible upload holding storage, which `remove_abandoned_writes` (or a bucket lifecycle
rule, AbortIncompleteMultipartUpload) removes.

Memory: a writer holds one part (PART_SIZE, sent once full), a reader one HTTP stream.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from functools import cached_property
from typing import BinaryIO

from portal.storage.errors import ObjectCorrupted, ObjectNotFound

# S3 wants every part but the last to be at least 5 MiB, and allows 10,000 parts: 80 GB.
PART_SIZE = 8 * 1024 * 1024


class S3Backend:
    def __init__(
        self,
        bucket: str,
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
    ) -> None:
        self.bucket = bucket
        self._endpoint_url = endpoint_url
        self._region = region
        self._credentials = (access_key_id, secret_access_key)

    def __repr__(self) -> str:
        return f"S3Backend({self.bucket!r}, endpoint_url={self._endpoint_url!r})"

    @cached_property
    def client(self):
        """The boto3 client, made on first use: importing boto3 costs every process start."""
        import boto3
        from botocore.config import Config

        options = {"retries": {"mode": "standard"}}
        if self._endpoint_url:
            # S3-compatible services (MinIO) want path-style addresses, and many reject the
            # checksum trailers boto3 sends by default; GCM authenticates every segment anyway.
            options.update(
                s3={"addressing_style": "path"},
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
            )
        access_key_id, secret_access_key = self._credentials
        return boto3.session.Session().client(
            "s3",
            endpoint_url=self._endpoint_url,
            region_name=self._region,
            aws_access_key_id=access_key_id,
            aws_secret_access_key=secret_access_key,
            config=Config(**options),
        )

    def open_upload(self, key: str) -> S3Upload:
        return S3Upload(self.client, self.bucket, key)

    def open_download(self, key: str) -> BinaryIO:
        try:
            return self.client.get_object(Bucket=self.bucket, Key=key)["Body"]
        except self.client.exceptions.NoSuchKey:
            raise ObjectNotFound(key) from None

    def read_head(self, key: str, length: int) -> tuple[bytes, int]:
        """The object's first `length` bytes and its stored size, in one ranged GET."""
        from botocore.exceptions import ClientError

        try:
            response = self.client.get_object(
                Bucket=self.bucket, Key=key, Range=f"bytes=0-{length - 1}"
            )
        except self.client.exceptions.NoSuchKey:
            raise ObjectNotFound(key) from None
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == "InvalidRange":  # an empty object
                raise ObjectCorrupted("the object is shorter than its header") from None
            raise
        with response["Body"] as body:
            head = body.read()
        content_range = response.get("ContentRange")  # "bytes 0-99/12345"
        size = int(content_range.rpartition("/")[2]) if content_range else len(head)
        return head, size

    def exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise
        return True

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=key)

    def keys(self, prefix: str) -> Iterator[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=prefix
        )
        for page in pages:
            for item in page.get("Contents", ()):
                yield item["Key"]

    def remove_abandoned_writes(self, older_than_seconds: float) -> int:
        """Abort multipart uploads started longer ago than this (writers that died); how many."""
        cutoff = time.time() - older_than_seconds
        removed = 0
        pages = self.client.get_paginator("list_multipart_uploads").paginate(Bucket=self.bucket)
        for page in pages:
            for upload in page.get("Uploads", ()):
                if upload["Initiated"].timestamp() < cutoff:
                    self.client.abort_multipart_upload(
                        Bucket=self.bucket, Key=upload["Key"], UploadId=upload["UploadId"]
                    )
                    removed += 1
        return removed


class S3Upload:
    """One object's upload: a single PUT if it stays under one part, else a multipart upload."""

    def __init__(self, client, bucket: str, key: str) -> None:
        self._client = client
        self._target = {"Bucket": bucket, "Key": key}
        self._buffer = bytearray()
        self._upload_id: str | None = None
        self._parts: list[dict] = []

    def write(self, data: bytes) -> None:
        self._buffer += data
        if len(self._buffer) >= PART_SIZE:
            self._send_part()

    def commit(self) -> None:
        if self._upload_id is None:
            self._client.put_object(**self._target, Body=self._buffer)
            return
        if self._buffer:
            self._send_part()
        self._client.complete_multipart_upload(
            **self._target, UploadId=self._upload_id, MultipartUpload={"Parts": self._parts}
        )

    def abort(self) -> None:
        self._buffer = bytearray()
        if self._upload_id is not None:
            self._client.abort_multipart_upload(**self._target, UploadId=self._upload_id)

    def _send_part(self) -> None:
        if self._upload_id is None:
            created = self._client.create_multipart_upload(**self._target)
            self._upload_id = created["UploadId"]
        number = len(self._parts) + 1
        sent = self._client.upload_part(
            **self._target, UploadId=self._upload_id, PartNumber=number, Body=self._buffer
        )
        self._parts.append({"ETag": sent["ETag"], "PartNumber": number})
        self._buffer = bytearray()
