"""Storage in an S3 bucket (or any S3-compatible endpoint), through boto3 with botocore's standard
retries and bounded timeouts; ranged reads through pyarrow's S3 filesystem with the same settings.
Failures become one-line StorageUnavailable errors naming the object (transient: tasks retry)."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.core.errors import ArtefactMissing, PreconditionFailed, StorageError, StorageUnavailable
from pipeline.core.storage.backend import MANIFEST
from pipeline.core.storage.publish import publish_under_lease


def s3_failure(op: str, uri: str, exc: Exception) -> StorageUnavailable:
    cause = " ".join(str(exc).split()) or type(exc).__name__
    return StorageUnavailable(f"S3 {op} of {uri} failed: {type(exc).__name__}: {cause}")


def _wrap_s3(method):
    """Turn botocore/pyarrow failures of an S3Backend method into one-line StorageUnavailable."""
    import functools

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return method(self, *args, **kwargs)
        except (BotoCoreError, ClientError) as exc:
            target = args[0] if args and isinstance(args[0], str) else ""
            raise s3_failure(method.__name__.strip("_"), self.uri(target), exc) from exc

    return wrapper


@dataclass(frozen=True)
class S3Options:
    """Where and how to reach S3. Empty fields fall back to boto3's own chain
    (``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, ... and instance roles)."""

    endpoint_url: str | None = None
    access_key_id: str | None = None
    secret_access_key: str | None = None
    session_token: str | None = None
    region: str | None = None
    # A hung endpoint fails within about max_attempts x (connect + read) seconds.
    connect_timeout: float = 5.0
    read_timeout: float = 15.0
    max_attempts: int = 3

    @classmethod
    def from_mapping(cls, values: dict[str, Any] | None) -> S3Options:
        values = values or {}
        fields = cls.__dataclass_fields__
        return cls(**{k: values[k] for k in fields if values.get(k) not in (None, "")})


def split_s3(uri: str) -> tuple[str, str]:
    rest = uri[len("s3://") :]
    bucket, _, prefix = rest.partition("/")
    if not bucket:
        raise StorageError(f"S3 URI has no bucket: {uri!r}")
    return bucket, prefix.strip("/")


class S3Backend:
    """A bucket (and prefix): writes are single PUTs, conditional writes use If-Match/If-None-Match,
    publishes follow pipeline/core/storage/publish.py."""

    local_root: Path | None = None

    def __init__(self, root: str, options: S3Options | None = None):
        import boto3
        from botocore.config import Config

        self.bucket, self.prefix = split_s3(root)
        opts = options or S3Options()
        self.options = self.s3_options = opts
        session = boto3.session.Session(
            aws_access_key_id=opts.access_key_id,
            aws_secret_access_key=opts.secret_access_key,
            aws_session_token=opts.session_token,
            region_name=opts.region or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1",
        )
        self.session = session
        self.client = session.client(
            "s3",
            endpoint_url=opts.endpoint_url or os.environ.get("AWS_ENDPOINT_URL") or None,
            config=Config(
                retries={"max_attempts": opts.max_attempts, "mode": "standard"},
                connect_timeout=opts.connect_timeout,
                read_timeout=opts.read_timeout,
                # S3-compatible stores (MinIO, older Ceph) reject the default
                # checksums that boto3 >= 1.36 sends (boto/boto3#4392).
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
            ),
        )

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}".strip("/") if self.prefix else key

    def arrow_fs(self):
        """pyarrow's S3 filesystem with the same endpoint, credentials and timeouts (ranged reads)."""
        from pyarrow import fs

        if getattr(self, "_arrow_fs", None) is None:
            opts = self.options
            creds = self.session.get_credentials()
            frozen = creds.get_frozen_credentials() if creds else None
            endpoint = self.client.meta.endpoint_url
            scheme, _, host = endpoint.partition("://")
            self._arrow_fs = fs.S3FileSystem(
                access_key=frozen.access_key if frozen else None,
                secret_key=frozen.secret_key if frozen else None,
                session_token=frozen.token if frozen else None,
                region=self.client.meta.region_name,
                endpoint_override=host,
                scheme=scheme,
                connect_timeout=opts.connect_timeout,
                request_timeout=opts.read_timeout,
                retry_strategy=fs.AwsStandardS3RetryStrategy(max_attempts=opts.max_attempts),
            )
        return self._arrow_fs

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._key(key)}"

    def exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.head_object(Bucket=self.bucket, Key=self._key(key))
            return True
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return bool(self.list_keys(key))
            raise

    def read_bytes(self, key: str) -> bytes:
        try:
            return self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"].read()
        except self.client.exceptions.NoSuchKey as exc:
            raise FileNotFoundError(f"no object at {self.uri(key)}") from exc

    def write_bytes(self, key: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data)  # a PUT is atomic

    def read_versioned(self, key: str) -> tuple[bytes | None, str | None]:
        try:
            obj = self.client.get_object(Bucket=self.bucket, Key=self._key(key))
        except self.client.exceptions.NoSuchKey:
            return None, None
        return obj["Body"].read(), obj["ETag"]

    def write_if(self, key: str, data: bytes, expected: str | None) -> str:
        """Conditional PUT: If-Match the ETag read before, or If-None-Match: * when there was none."""
        from botocore.exceptions import ClientError

        try:
            if expected:
                put = self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data, IfMatch=expected)
            else:
                put = self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data, IfNoneMatch="*")
            return put["ETag"]
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code")
            if code in ("PreconditionFailed", "412", "ConditionalRequestConflict", "NoSuchKey"):
                raise PreconditionFailed(f"{self.uri(key)} changed since it was read ({code})") from exc
            raise

    def objects(self, prefix: str, relative: bool = True) -> Iterator[dict]:
        """Every object at or under the key `prefix` (pages followed), with its key made relative to
        the root (or left as the bucket's key)."""
        full = self._key(prefix)
        strip = len(self.prefix) + 1 if self.prefix and relative else 0
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=full):
            for obj in page.get("Contents", []):
                if not relative or obj["Key"] == full or obj["Key"].startswith(full.rstrip("/") + "/"):
                    yield {**obj, "Key": obj["Key"][strip:]}

    def list_keys(self, prefix: str) -> list[str]:
        return sorted(obj["Key"] for obj in self.objects(prefix))

    def list_children(self, prefix: str) -> list[str]:
        full = self._key(prefix).rstrip("/") + "/"
        names = set()
        for page in self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=full, Delimiter="/"
        ):
            for cp in page.get("CommonPrefixes", []):
                names.add(cp["Prefix"][len(full) :].rstrip("/"))
            for obj in page.get("Contents", []):
                names.add(obj["Key"][len(full) :])
        return sorted(n for n in names if n and not n.startswith("."))

    @contextlib.contextmanager
    def staging(self) -> Iterator[Path]:
        with tempfile.TemporaryDirectory(prefix="pipeline-stage-") as tmp:
            yield Path(tmp)

    def _delete(self, keys: list[str]) -> None:
        for i in range(0, len(keys), 1000):
            chunk: list[Any] = [{"Key": self._key(k)} for k in keys[i : i + 1000]]
            if chunk:
                self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": chunk, "Quiet": True})

    def list_objects(self, prefix: str) -> list[tuple[str, float, int]]:
        return sorted((o["Key"], o["LastModified"].timestamp(), int(o["Size"])) for o in self.objects(prefix))

    def delete_keys(self, keys: list[str]) -> None:
        self._delete(list(keys))

    def publish_dir(
        self, staged: Path, key: str, manifest: dict, lease_seconds: float = 120.0, wait_seconds: float = 600.0
    ) -> None:
        files = {
            str(p.relative_to(staged)).replace(os.sep, "/"): p
            for p in staged.rglob("*")
            if p.is_file() and p.name != MANIFEST
        }

        def upload(path: Path, dest: str) -> None:
            self.client.upload_file(str(path), self.bucket, self._key(dest))

        publish_under_lease(self, key, manifest, files, upload, lease_seconds, wait_seconds)

    def publish_objects(
        self,
        sources: dict[str, str],
        key: str,
        manifest: dict,
        lease_seconds: float = 120.0,
        wait_seconds: float = 600.0,
    ) -> None:
        """Publish objects already in the bucket (mapped writers' parts) by server-side copy."""

        def copy(src: str, dest: str) -> None:
            self.client.copy({"Bucket": self.bucket, "Key": self._key(src)}, self.bucket, self._key(dest))

        publish_under_lease(self, key, manifest, sources, copy, lease_seconds, wait_seconds)

    def publish_parts(
        self,
        prefix: str,
        files: list[str],
        key: str,
        manifest: dict,
        lease_seconds: float = 120.0,
        wait_seconds: float = 600.0,
    ) -> None:
        self.publish_objects({f: f"{prefix}/{f}" for f in files}, key, manifest, lease_seconds, wait_seconds)
        self.delete_prefix(prefix)

    def open_input(self, key: str):
        """A seekable file (ranged GETs), e.g. for pq.ParquetFile row-group reads."""
        try:
            return self.arrow_fs().open_input_file(f"{self.bucket}/{self._key(key)}")
        except FileNotFoundError as exc:
            raise ArtefactMissing(f"no object at {self.uri(key)}") from exc
        except OSError as exc:
            raise StorageUnavailable(f"S3 open of {self.uri(key)} failed: {' '.join(str(exc).split())}") from exc

    def head(self, key: str) -> dict | None:
        """The object's metadata (None if it does not exist)."""
        from botocore.exceptions import ClientError

        try:
            return dict(self.client.head_object(Bucket=self.bucket, Key=self._key(key)))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise

    def delete_prefix(self, key: str) -> None:
        keys = self.list_keys(key)
        manifest = f"{key}/{MANIFEST}"
        if manifest in keys:  # uncommit first, so readers stop seeing it at once
            self._delete([manifest])
        self._delete([k for k in keys if k != manifest])


for _name in (
    "exists",
    "read_bytes",
    "write_bytes",
    "read_versioned",
    "write_if",
    "list_keys",
    "list_children",
    "_delete",
    "list_objects",
    "delete_keys",
    "publish_dir",
    "publish_objects",
    "delete_prefix",
    "publish_parts",
    "head",
):
    setattr(S3Backend, _name, _wrap_s3(getattr(S3Backend, _name)))
