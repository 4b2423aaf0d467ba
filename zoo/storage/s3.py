"""A store in an S3 bucket (AWS, SeaweedFS, MinIO, ...) through boto3.

Immutable objects are written with `If-None-Match: *` and the index with `If-Match:
<etag>`, so the server itself arbitrates races between publishers; no lock service is
needed. Credentials come only from boto3's usual chain (AWS_* variables, profile, instance
role) and are never written to the index or printed.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from typing import Any

from zoo.errors import (
    BlobNotFoundError,
    ChecksumMismatchError,
    StoreAuthError,
    StoreConflictError,
    StoreError,
    StoreUnreachableError,
    ZooError,
)
from zoo.storage.base import CHUNK, Store, Versioned, blob_key, check_key, store_timeout

ENV_ENDPOINTS = ("ZOO_S3_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")
_AUTH_CODES = {
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "AccessDenied",
    "InvalidToken",
    "ExpiredToken",
    "403",
}
_CONFLICT_CODES = {"PreconditionFailed", "412", "ConditionalRequestConflict", "409"}
_MISSING_CODES = {"NoSuchKey", "404", "NotFound"}


def _code(exc: Exception) -> str:
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


class S3Store(Store):
    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        client: Any = None,
        **client_kwargs: Any,
    ) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.endpoint_url = endpoint_url
        self.url = f"s3://{bucket}" + (f"/{self.prefix}" if self.prefix else "")
        self._client = client
        self._client_kwargs = client_kwargs

    @classmethod
    def from_url(cls, url: str) -> S3Store:
        """`s3://bucket[/prefix]`; the endpoint comes from ZOO_S3_ENDPOINT_URL, then
        AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL, else AWS itself."""
        body = url[len("s3://") :]
        bucket, _, prefix = body.partition("/")
        if len(bucket) < 3:
            raise StoreError(f"invalid S3 URL {url!r}: expected s3://bucket[/prefix]")
        endpoint = next((os.environ[v] for v in ENV_ENDPOINTS if os.environ.get(v)), None)
        return cls(bucket, prefix, endpoint_url=endpoint)

    @property
    def identity(self) -> str:
        endpoint = self.endpoint_url or self._client_kwargs.get("endpoint_url") or "aws"
        return f"{self.url}@{endpoint.rstrip('/')}"

    @property
    def client(self) -> Any:
        if self._client is None:
            import boto3
            from botocore.config import Config

            # $ZOO_TIMEOUT bounds how long one call may wait on a silent server, its one
            # retry included: an endpoint that accepts and never answers fails in that
            # time with the "unreachable" error, instead of hanging a stage for minutes.
            attempts = 2
            per_attempt = store_timeout() / attempts
            config = Config(
                retries={"total_max_attempts": attempts, "mode": "standard"},
                connect_timeout=per_attempt,
                read_timeout=per_attempt,
            )
            self._client = boto3.client(
                "s3", endpoint_url=self.endpoint_url, config=config, **self._client_kwargs
            )
        return self._client

    def _key(self, key: str) -> str:
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _error(self, exc: Exception, what: str) -> StoreError:
        from botocore.exceptions import (
            ConnectionError as BotoConnectionError,
        )
        from botocore.exceptions import (
            EndpointConnectionError,
            HTTPClientError,
            NoCredentialsError,
        )

        if isinstance(exc, ZooError):
            raise exc  # ours already (a refused key): not a server error to translate
        where = f"{self.url} ({self.endpoint_url or 'AWS'})"
        # HTTPClientError covers read timeouts and dropped connections.
        if isinstance(exc, EndpointConnectionError | BotoConnectionError | HTTPClientError):
            return StoreUnreachableError(
                f"cannot reach S3 endpoint for {where} while {what}: {exc}. Check "
                "ZOO_S3_ENDPOINT_URL / AWS_ENDPOINT_URL and that the server is running "
                "(`make s3-up` for the local SeaweedFS)."
            )
        if isinstance(exc, NoCredentialsError):
            return StoreAuthError(
                f"no AWS credentials found for {where}: set AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY (or AWS_PROFILE)"
            )
        code = _code(exc)
        if code in _AUTH_CODES:
            return StoreAuthError(
                f"S3 refused our credentials for {where} while {what} ({code}); check "
                "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or AWS_PROFILE"
            )
        if code == "NoSuchBucket":
            return StoreError(f"bucket {self.bucket!r} does not exist at {where}; create it first")
        return StoreError(f"S3 error for {where} while {what}: {exc}")

    # -- blobs ---------------------------------------------------------------------------

    def put_blob(self, sha256: str, source: str | os.PathLike[str]) -> bool:
        key = self._key(blob_key(sha256))
        self._check_source(sha256, source)
        if self.has_blob(sha256):
            return False
        try:
            with open(source, "rb") as handle:
                # One conditional PUT (up to 5 GB): the object appears whole or not at all.
                self.client.put_object(Bucket=self.bucket, Key=key, Body=handle, IfNoneMatch="*")
        except Exception as exc:
            if _code(exc) in _CONFLICT_CODES:
                return False
            raise self._error(exc, f"uploading blob {sha256}") from exc
        return True

    def replace_blob(self, sha256: str, source: str | os.PathLike[str]) -> None:
        self._check_source(sha256, source)
        try:
            with open(source, "rb") as handle:
                self.client.put_object(
                    Bucket=self.bucket, Key=self._key(blob_key(sha256)), Body=handle
                )
        except Exception as exc:
            raise self._error(exc, f"replacing blob {sha256}") from exc

    def touch_blob(self, sha256: str) -> None:
        # A copy onto itself with new metadata is how S3 renews LastModified.
        key = self._key(blob_key(sha256))
        try:
            self.client.copy_object(
                Bucket=self.bucket,
                Key=key,
                CopySource={"Bucket": self.bucket, "Key": key},
                MetadataDirective="REPLACE",
            )
        except Exception as exc:
            raise self._error(exc, f"renewing blob {sha256}") from exc

    def objects(self, prefix: str = "") -> Iterator[tuple[str, float]]:
        for key, item in self._listing(prefix):
            yield key, item["LastModified"].timestamp()

    def modified(self, key: str) -> float | None:
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=self._key(key))
        except Exception as exc:
            if _code(exc) in _MISSING_CODES:
                return None
            raise self._error(exc, f"checking {key}") from exc
        return float(head["LastModified"].timestamp())

    def delete(self, key: str) -> None:
        try:
            self.client.delete_object(Bucket=self.bucket, Key=self._key(key))
        except Exception as exc:
            raise self._error(exc, f"deleting {key}") from exc

    @staticmethod
    def _check_source(sha256: str, source: str | os.PathLike[str]) -> None:
        digest = hashlib.sha256()
        with open(source, "rb") as handle:
            for block in iter(lambda: handle.read(CHUNK), b""):
                digest.update(block)
        if digest.hexdigest() != sha256:
            raise ChecksumMismatchError(str(source), sha256, digest.hexdigest(), "upload")

    def blob_size(self, sha256: str) -> int:
        key = self._key(blob_key(sha256))
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=key)
        except Exception as exc:
            if _code(exc) in _MISSING_CODES:
                raise BlobNotFoundError(f"blob {sha256} not found in store {self.url}") from None
            raise self._error(exc, f"checking blob {sha256}") from exc
        return int(head["ContentLength"])

    def iter_blob(
        self, sha256: str, start: int = 0, end: int | None = None, chunk_size: int = CHUNK
    ) -> Iterator[bytes]:
        key = self._key(blob_key(sha256))
        if end is not None and end <= start:
            return iter(())
        byte_range = f"bytes={start}-" + ("" if end is None else str(end - 1))
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=key, Range=byte_range)
        except Exception as exc:
            code = _code(exc)
            if code in _MISSING_CODES:
                raise BlobNotFoundError(f"blob {sha256} not found in store {self.url}") from None
            if code in ("InvalidRange", "416"):
                return iter(())  # start is at (or past) the end: nothing left to read
            raise self._error(exc, f"downloading blob {sha256}") from exc
        return self._stream(response["Body"], chunk_size, sha256)

    def _stream(self, body: Any, chunk_size: int, sha256: str) -> Iterator[bytes]:
        try:
            yield from body.iter_chunks(chunk_size)
        except Exception as exc:
            raise self._error(exc, f"downloading blob {sha256}") from exc
        finally:
            body.close()

    # -- documents -----------------------------------------------------------------------

    def get(self, key: str) -> Versioned | None:
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=self._key(key))
            data = response["Body"].read()
        except Exception as exc:
            if _code(exc) in _MISSING_CODES:
                return None
            raise self._error(exc, f"reading {key}") from exc
        return Versioned(data, str(response["ETag"]))

    def put_if_absent(self, key: str, data: bytes) -> bool:
        try:
            self.client.put_object(
                Bucket=self.bucket, Key=self._key(key), Body=data, IfNoneMatch="*"
            )
        except Exception as exc:
            if _code(exc) in _CONFLICT_CODES:
                return False
            raise self._error(exc, f"writing {key}") from exc
        return True

    def put_if_match(self, key: str, data: bytes, etag: str | None) -> str:
        condition = {"IfNoneMatch": "*"} if etag is None else {"IfMatch": etag}
        try:
            response = self.client.put_object(
                Bucket=self.bucket, Key=self._key(key), Body=data, **condition
            )
        except Exception as exc:
            if _code(exc) in _CONFLICT_CODES:
                raise StoreConflictError(
                    f"{self.url}/{key} changed since it was read (expected etag {etag})"
                ) from None
            raise self._error(exc, f"updating {key}") from exc
        return str(response["ETag"])

    def list(self, prefix: str = "") -> Iterator[str]:
        return (key for key, _ in self._listing(prefix))

    def _listing(self, prefix: str) -> Iterator[tuple[str, dict[str, Any]]]:
        full = self._key(prefix.rstrip("/")) if prefix else self.prefix
        if prefix.endswith("/") or (not prefix and full):
            full += "/"
        strip = len(self.prefix) + 1 if self.prefix else 0
        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=full
            )
            for page in pages:
                for item in page.get("Contents", []):
                    yield item["Key"][strip:], item
        except Exception as exc:
            raise self._error(exc, f"listing {prefix!r}") from exc
