"""One storage layer addressed by URI: a local directory or ``s3://bucket/prefix``.

Keys are POSIX-style paths relative to the storage root (``raw/credit/dt=2025-01-01``).

Partitions are published atomically. A writer fills a local *staging directory*
and then calls :meth:`Storage.publish_partition`:

* local: the staging directory lives on the same filesystem as the root and is
  swapped into place with one ``rename`` (``renameat2(RENAME_EXCHANGE)`` when the
  partition already exists), so a reader sees the old complete partition or the
  new complete one, never a mix;
* S3 has no rename and no multi-key transaction. A publish first takes the
  partition's lease (``_publishing.json``, created with ``If-None-Match: *``, renewed
  with ``If-Match`` while uploading), so one writer at a time publishes a partition;
  a second writer waits for it. Under the lease: new files are uploaded under names
  unique to this publish, ``_manifest.json`` is written with ``If-Match`` on the
  version read at the start (the commit point; a single PUT is atomic), then every
  object of the partition that the new manifest does not list is deleted (the
  previous version, and debris of writers killed earlier), then the lease is
  released. A writer killed mid-publish leaves its lease; it expires after
  ``publish_lease_seconds``, or at once for the next writer on the same host when
  the holder's process is gone. A writer that loses its lease or the manifest
  condition deletes what it uploaded and fails (transient: it is retried).

What a reader sees:

* through the manifest (every reader in this package): the previous complete
  version until the manifest PUT, the new complete version after it;
* a glob over the partition's ``*.parquet`` (DuckDB, Athena): exactly the manifest's
  files whenever no publish is in progress. *During* a publish (while
  ``_publishing.json`` exists) it can see the previous version's files plus some or
  all of the new version's files, i.e. rows twice; never a truncated file (every
  object is one PUT). After any kill, the next completed publish of the partition
  removes the debris.

A partition without ``_manifest.json`` does not exist as far as readers care.
Mapped writers stage parts under ``_staging/`` (outside every partition, so globs
never see them) and publish them as one partition with :meth:`Storage.publish_staged`.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import hashlib
import io
import json
import logging
import os
import shutil
import socket
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.core.errors import (
    ArtefactError,
    ArtefactMissing,
    PartitionNotFound,
    PreconditionFailed,
    PublishConflict,
    StorageError,
    StorageFull,
    StorageUnavailable,
)

log = logging.getLogger(__name__)

MANIFEST = "_manifest.json"
LEASE = "_publishing.json"
STAGING_DIR = "_staging"
# Mapped writers' parts: <root>/_staging/parts/<partition key>/<token>/<name>
PARTS_DIR = f"{STAGING_DIR}/parts"


def _s3_failure(op: str, uri: str, exc: Exception) -> StorageUnavailable:
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
            raise _s3_failure(method.__name__.strip("_"), self.uri(target), exc) from exc

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


def _split_s3(uri: str) -> tuple[str, str]:
    rest = uri[len("s3://") :]
    bucket, _, prefix = rest.partition("/")
    if not bucket:
        raise StorageError(f"S3 URI has no bucket: {uri!r}")
    return bucket, prefix.strip("/")


def _check_key(key: str) -> str:
    key = key.strip("/")
    if any(part in ("..", ".") for part in key.split("/")):
        raise StorageError(f"storage key may not contain '.' or '..' parts: {key!r}")
    return key


# --------------------------------------------------------------------------- local


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux renameat2). False when unsupported."""
    libc_name = ctypes.util.find_library("c")
    if not libc_name:
        return False
    libc = ctypes.CDLL(libc_name, use_errno=True)
    fn = getattr(libc, "renameat2", None)
    if fn is None:
        return False
    rc = fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    return rc == 0


class LocalBackend:
    def __init__(self, root: str):
        self.root = Path(root[len("file://") :] if root.startswith("file://") else root).resolve()

    def uri(self, key: str) -> str:
        return str(self.root / key) if key else str(self.root)

    def _path(self, key: str) -> Path:
        return self.root / key

    def exists(self, key: str) -> bool:
        return self._path(key).exists()

    def read_bytes(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError as exc:
            raise FileNotFoundError(f"no object at {self.uri(key)}") from exc

    def write_bytes(self, key: str, data: bytes) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        try:
            with open(tmp, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            _raise_if_full(exc, self.uri(key))
            raise

    def read_versioned(self, key: str) -> tuple[bytes | None, str | None]:
        """The object's bytes and a version tag (sha256 of the content), or (None, None)."""
        try:
            data = self._path(key).read_bytes()
        except FileNotFoundError:
            return None, None
        return data, hashlib.sha256(data).hexdigest()

    def write_if(self, key: str, data: bytes, expected: str | None) -> str:
        """Write only if the object's version tag is still `expected` (None: must not exist).
        An exclusive lock beside the object serialises writers across processes."""
        import fcntl

        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path.with_name(f".{path.name}.lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                _, current = self.read_versioned(key)
                if current != expected:
                    raise PreconditionFailed(f"{self.uri(key)} changed since it was read")
                self.write_bytes(key, data)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
        return hashlib.sha256(data).hexdigest()

    def list_keys(self, prefix: str) -> list[str]:
        base = self._path(prefix)
        if not base.exists():
            return []
        if base.is_file():
            return [prefix]
        return sorted(str(p.relative_to(self.root)).replace(os.sep, "/") for p in base.rglob("*") if p.is_file())

    def list_objects(self, prefix: str) -> list[tuple[str, float, int]]:
        """(key, modified epoch seconds, size) of every file under the prefix, dot-files included."""
        base = self._path(prefix)
        if not base.exists():
            return []
        paths = [base] if base.is_file() else [p for p in base.rglob("*") if p.is_file()]
        out = []
        for p in paths:
            try:
                st = p.stat()
            except FileNotFoundError:
                continue
            out.append((str(p.relative_to(self.root)).replace(os.sep, "/"), st.st_mtime, st.st_size))
        return sorted(out)

    def delete_keys(self, keys: list[str]) -> None:
        for key in keys:
            self._path(key).unlink(missing_ok=True)

    def staged_parts_dir(self, key: str) -> Path:
        return self._path(key)

    def list_children(self, prefix: str) -> list[str]:
        base = self._path(prefix)
        if not base.is_dir():
            return []
        return sorted(p.name for p in base.iterdir() if not p.name.startswith("."))

    @contextlib.contextmanager
    def staging(self) -> Iterator[Path]:
        # Same filesystem as the root, so publishing is a rename.
        base = self.root / STAGING_DIR
        base.mkdir(parents=True, exist_ok=True)
        path = Path(tempfile.mkdtemp(prefix="stage-", dir=base))
        path.chmod(0o755)  # mkdtemp makes it private; a published partition must be readable
        try:
            yield path
        finally:
            shutil.rmtree(path, ignore_errors=True)

    def publish_dir(self, staged: Path, key: str, manifest: dict, **_lease) -> None:
        (staged / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True))
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists():
            if _exchange(staged, target):
                return  # the old version now sits in `staged` and is removed with it
            graveyard = self.root / STAGING_DIR / f"old-{uuid.uuid4().hex}"
            os.rename(target, graveyard)
            os.rename(staged, target)
            shutil.rmtree(graveyard, ignore_errors=True)
            staged.mkdir()  # the staging context expects to remove it
        else:
            os.rename(staged, target)
            staged.mkdir()

    def delete_prefix(self, key: str) -> None:
        target = self._path(key)
        if not target.exists():
            return
        if target.is_file():
            target.unlink()
            return
        graveyard = self.root / STAGING_DIR / f"old-{uuid.uuid4().hex}"
        graveyard.parent.mkdir(parents=True, exist_ok=True)
        os.rename(target, graveyard)  # disappears at once, then is cleaned up
        shutil.rmtree(graveyard, ignore_errors=True)


# --------------------------------------------------------------------------- S3


class S3Backend:
    def __init__(self, root: str, options: S3Options | None = None):
        import boto3
        from botocore.config import Config

        self.bucket, self.prefix = _split_s3(root)
        opts = options or S3Options()
        self.options = opts
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

    def list_keys(self, prefix: str) -> list[str]:
        full = self._key(prefix)
        strip = len(self.prefix) + 1 if self.prefix else 0
        keys = []
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=full):
            for obj in page.get("Contents", []):
                k = obj["Key"]
                if k == full or k.startswith(full.rstrip("/") + "/"):
                    keys.append(k[strip:])
        return sorted(keys)

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
        full = self._key(prefix)
        strip = len(self.prefix) + 1 if self.prefix else 0
        out = []
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=full):
            for obj in page.get("Contents", []):
                k = obj["Key"]
                if k == full or k.startswith(full.rstrip("/") + "/"):
                    out.append((k[strip:], obj["LastModified"].timestamp(), int(obj["Size"])))
        return sorted(out)

    def delete_keys(self, keys: list[str]) -> None:
        self._delete(list(keys))

    # ---- the publish lease

    def _lease_body(self, owner: str, lease_seconds: float) -> bytes:
        return json.dumps(
            {
                "owner": owner,
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "process_start": _process_start(os.getpid()),
                "acquired_at": time.time(),
                "expires_at": time.time() + lease_seconds,
            }
        ).encode()

    def _acquire_lease(self, key: str, lease_seconds: float, wait_seconds: float) -> _Lease:
        lease_key = f"{key}/{LEASE}"
        owner = uuid.uuid4().hex
        deadline = time.monotonic() + wait_seconds
        delay = 0.05
        announced = False
        while True:
            data, etag = self.read_versioned(lease_key)
            held = _parse_lease(data)
            if data is None or _lease_is_free(held):
                try:
                    tag = self.write_if(lease_key, self._lease_body(owner, lease_seconds), etag)
                    return _Lease(lease_key, owner, tag, lease_seconds, time.monotonic())
                except PreconditionFailed:
                    pass  # another writer got it first
            if not announced:
                log.info(
                    "waiting for the publish lease of %s (held by %s pid %s)",
                    self.uri(key),
                    held.get("host"),
                    held.get("pid"),
                )
                announced = True
            if time.monotonic() > deadline:
                raise PublishConflict(
                    f"{self.uri(key)} is being published by {held.get('host')} pid {held.get('pid')} (lease "
                    f"{LEASE} until {_iso(held.get('expires_at'))}); gave up after {wait_seconds:.0f}s. Retry; "
                    "a writer killed mid-publish frees it when the lease expires"
                )
            time.sleep(delay)
            delay = min(delay * 1.5, 1.0)

    def _renew_lease(self, lease: _Lease, force: bool = False) -> None:
        if not force and time.monotonic() - lease.renewed < lease.seconds / 3:
            return
        try:
            lease.etag = self.write_if(lease.key, self._lease_body(lease.owner, lease.seconds), lease.etag)
            lease.renewed = time.monotonic()
        except PreconditionFailed as exc:
            raise PublishConflict(f"lost the publish lease {self.uri(lease.key)} to another writer") from exc

    def _release_lease(self, lease: _Lease) -> None:
        data, etag = self.read_versioned(lease.key)
        if data is not None and _parse_lease(data).get("owner") == lease.owner:
            self._delete([lease.key])

    # ---- publishing

    def _publish(
        self, key: str, manifest: dict, put_files, lease_seconds: float = 120.0, wait_seconds: float = 600.0
    ) -> None:
        """Under the partition's lease: put the new files (put_files(token, renew) -> {logical: stored}),
        commit the manifest conditionally, then remove every object the manifest does not list."""
        lease = self._acquire_lease(key, lease_seconds, wait_seconds)
        uploaded: list[str] = []
        try:
            _, manifest_tag = self.read_versioned(f"{key}/{MANIFEST}")
            token = uuid.uuid4().hex[:12]

            def renew() -> None:
                self._renew_lease(lease)

            renamed = put_files(key, token, uploaded, renew)
            self._renew_lease(lease, force=True)  # still ours right before the commit point
            manifest = dict(manifest)
            manifest["files"] = [renamed.get(f, f) for f in manifest.get("files", [])]
            manifest["file_map"] = {f: renamed.get(f, f) for f in renamed}
            body = json.dumps(manifest, indent=2, sort_keys=True).encode()
            try:
                self.write_if(f"{key}/{MANIFEST}", body, manifest_tag)
            except PreconditionFailed as exc:
                raise PublishConflict(
                    f"{self.uri(key)}: the manifest changed under the lease; this publish lost and removed its files"
                ) from exc
        except BaseException:
            self._delete(uploaded)  # nothing was committed: leave the previous version as it was
            with contextlib.suppress(Exception):
                self._release_lease(lease)
            raise
        # Committed. Remove everything the manifest does not list: the previous version and the
        # debris of writers killed earlier (only a lease holder uploads here, and we hold it).
        keep = {f"{key}/{name}" for name in manifest["files"]} | {f"{key}/{MANIFEST}", lease.key}
        self._delete([k for k in self.list_keys(key) if k not in keep and _directly_in(k, key, manifest)])
        self._release_lease(lease)

    def publish_dir(
        self, staged: Path, key: str, manifest: dict, lease_seconds: float = 120.0, wait_seconds: float = 600.0
    ) -> None:
        def put_files(key, token, uploaded, renew):
            renamed = {}
            for path in sorted(p for p in staged.rglob("*") if p.is_file() and p.name != MANIFEST):
                rel = str(path.relative_to(staged)).replace(os.sep, "/")
                unique = _unique_name(rel, token)
                uploaded.append(f"{key}/{unique}")
                self.client.upload_file(str(path), self.bucket, self._key(f"{key}/{unique}"))
                renamed[rel] = unique
                renew()
            return renamed

        self._publish(key, manifest, put_files, lease_seconds, wait_seconds)

    def publish_objects(
        self,
        sources: dict[str, str],
        key: str,
        manifest: dict,
        lease_seconds: float = 120.0,
        wait_seconds: float = 600.0,
    ) -> None:
        """Publish objects already in the bucket (mapped writers' parts) by server-side copy."""

        def put_files(key, token, uploaded, renew):
            renamed = {}
            for rel, src in sorted(sources.items()):
                unique = _unique_name(rel, token)
                uploaded.append(f"{key}/{unique}")
                self.client.copy(
                    {"Bucket": self.bucket, "Key": self._key(src)}, self.bucket, self._key(f"{key}/{unique}")
                )
                renamed[rel] = unique
                renew()
            return renamed

        self._publish(key, manifest, put_files, lease_seconds, wait_seconds)

    def delete_prefix(self, key: str) -> None:
        keys = self.list_keys(key)
        manifest = f"{key}/{MANIFEST}"
        if manifest in keys:  # uncommit first, so readers stop seeing it at once
            self._delete([manifest])
        self._delete([k for k in keys if k != manifest])


# --------------------------------------------------------------------------- lease helpers


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
):
    setattr(S3Backend, _name, _wrap_s3(getattr(S3Backend, _name)))


@dataclass
class _Lease:
    key: str
    owner: str
    etag: str
    seconds: float
    renewed: float


def _unique_name(rel: str, token: str) -> str:
    stem, dot, ext = rel.rpartition(".")
    return f"{stem}-{token}.{ext}" if dot and "/" not in ext else f"{rel}-{token}"


def _directly_in(obj: str, key: str, manifest: dict) -> bool:
    """An object of this partition (not of a nested partition under it)."""
    rel = obj[len(key) + 1 :]
    if "/" not in rel:
        return True
    return any(f.startswith(rel.split("/")[0] + "/") for f in manifest.get("files", []))


def _parse_lease(data: bytes | None) -> dict:
    if not data:
        return {}
    try:
        value = json.loads(data)
        return value if isinstance(value, dict) else {}
    except (json.JSONDecodeError, UnicodeDecodeError):
        return {}  # a garbled lease protects nothing


def _process_start(pid: int) -> str | None:
    """The process's start time (Linux), so a reused pid is not mistaken for the holder."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        return None if fields[0] in ("Z", "X") else fields[19]  # a zombie is gone, only unreaped
    except (OSError, IndexError):
        return None


def _lease_is_free(held: dict) -> bool:
    """Expired, unreadable, or held by a process of this host that no longer exists."""
    if not held or float(held.get("expires_at") or 0) < time.time():
        return True
    if held.get("host") == socket.gethostname() and held.get("pid"):
        start = _process_start(int(held["pid"]))
        if start is None and not os.path.exists("/proc/self/stat"):
            try:
                os.kill(int(held["pid"]), 0)
                return False
            except ProcessLookupError:
                return True
            except PermissionError:
                return False
        return start is None or (held.get("process_start") is not None and start != held["process_start"])
    return False


def lease_is_free(data: bytes | None) -> bool:
    return data is None or _lease_is_free(_parse_lease(data))


def _iso(epoch: Any) -> str:
    import datetime as _dt

    try:
        return _dt.datetime.fromtimestamp(float(epoch), _dt.UTC).isoformat(timespec="seconds")
    except (TypeError, ValueError):
        return "?"


# --------------------------------------------------------------------------- facade


class Storage:
    """Reads and writes by key under one root URI."""

    def __init__(
        self,
        root_uri: str,
        s3_options: S3Options | None = None,
        row_group_rows: int = 100_000,
        lease_seconds: float = 120.0,
        wait_seconds: float = 600.0,
    ):
        self.root_uri = root_uri
        self.row_group_rows = row_group_rows
        self.lease_seconds = lease_seconds
        self.wait_seconds = wait_seconds
        if root_uri.startswith("s3://"):
            self.backend: LocalBackend | S3Backend = S3Backend(root_uri, s3_options)
        elif "://" in root_uri and not root_uri.startswith("file://"):
            raise StorageError(f"unsupported storage URI scheme: {root_uri!r} (use a path or s3://)")
        else:
            self.backend = LocalBackend(root_uri)

    @property
    def is_s3(self) -> bool:
        return isinstance(self.backend, S3Backend)

    def uri(self, key: str = "") -> str:
        return self.backend.uri(_check_key(key))

    def exists(self, key: str) -> bool:
        return self.backend.exists(_check_key(key))

    def read_bytes(self, key: str) -> bytes:
        try:
            return self.backend.read_bytes(_check_key(key))
        except FileNotFoundError as exc:
            raise ArtefactMissing(str(exc)) from exc

    def write_bytes(self, key: str, data: bytes) -> None:
        self.backend.write_bytes(_check_key(key), data)

    def read_external(self, uri: str) -> bytes:
        """Bytes of a file outside the root (e.g. the source): a local path, or an s3:// URI
        reached with the same endpoint and credentials as this storage."""
        if uri.startswith("s3://"):
            backend, key = self._external_s3(uri)
            return backend.read_bytes(key)
        with open(uri, "rb") as fh:
            return fh.read()

    def _external_s3(self, uri: str) -> tuple[S3Backend, str]:
        bucket, key = _split_s3(uri)
        options = self.backend.options if isinstance(self.backend, S3Backend) else None
        return S3Backend(f"s3://{bucket}", options), key

    def external_version(self, uri: str) -> str | None:
        """A tag that changes whenever the file at `uri` changes (None if it does not exist)."""
        if uri.startswith("s3://"):
            from botocore.exceptions import BotoCoreError, ClientError

            backend, key = self._external_s3(uri)
            try:
                head = backend.client.head_object(Bucket=backend.bucket, Key=key)
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                    return None
                raise _s3_failure("head", uri, exc) from exc
            except BotoCoreError as exc:
                raise _s3_failure("head", uri, exc) from exc
            return f"{head['ContentLength']}-{head['ETag']}"
        try:
            st = os.stat(uri)
        except FileNotFoundError:
            return None
        return f"{st.st_size}-{st.st_mtime_ns}"

    def external_size(self, uri: str) -> int | None:
        """Size in bytes of the file at `uri` (None if it does not exist), read without fetching it."""
        version = self.external_version(uri)
        return None if version is None else int(version.split("-", 1)[0])

    def external_exists(self, uri: str) -> bool:
        return self.external_version(uri) is not None

    def list_external(self, prefix_uri: str) -> list[str]:
        """s3:// URIs of every object whose key starts with the prefix (no directory semantics)."""
        from botocore.exceptions import BotoCoreError, ClientError

        backend, prefix = self._external_s3(prefix_uri)
        out = []
        try:
            for page in backend.client.get_paginator("list_objects_v2").paginate(Bucket=backend.bucket, Prefix=prefix):
                out += [f"s3://{backend.bucket}/{obj['Key']}" for obj in page.get("Contents", [])]
        except (BotoCoreError, ClientError) as exc:
            raise _s3_failure("list", prefix_uri, exc) from exc
        return sorted(out)

    def read_json(self, key: str) -> Any:
        data = self.read_bytes(key)
        try:
            return json.loads(data)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ArtefactError(
                f"{self.uri(key)}: not valid JSON ({exc}); restore it from a backup or rerun the step that wrote it"
            ) from exc

    def read_json_versioned(self, key: str) -> tuple[Any, str | None]:
        """The JSON value (None if absent) and its version tag, for :meth:`write_json_if`."""
        data, tag = self.backend.read_versioned(_check_key(key))
        return (json.loads(data) if data is not None else None), tag

    def write_json_if(self, key: str, value: Any, expected: str | None) -> str:
        """Compare-and-swap: write only if the object is still at version `expected` (None: absent);
        raises PreconditionFailed otherwise. Returns the new version tag."""
        data = json.dumps(value, indent=2, sort_keys=True, default=str).encode()
        return self.backend.write_if(_check_key(key), data, expected)

    def write_json(self, key: str, value: Any) -> None:
        self.write_bytes(key, json.dumps(value, indent=2, sort_keys=True, default=str).encode())

    def list_keys(self, prefix: str) -> list[str]:
        return self.backend.list_keys(_check_key(prefix))

    def list_children(self, prefix: str) -> list[str]:
        return self.backend.list_children(_check_key(prefix))

    def delete(self, key: str) -> None:
        self.backend.delete_prefix(_check_key(key))

    # ---- partitions

    @contextlib.contextmanager
    def staging(self) -> Iterator[Path]:
        """A local directory to write a partition's files into before publishing."""
        with self.backend.staging() as path:
            yield path

    def publish_partition(self, key: str, staged: Path, manifest: dict | None = None) -> dict:
        """Atomically replace the partition at `key` with the files in `staged`."""
        key = _check_key(key)
        files = sorted(
            str(p.relative_to(staged)).replace(os.sep, "/")
            for p in staged.rglob("*")
            if p.is_file() and p.name != MANIFEST
        )
        if not files:
            raise StorageError(f"refusing to publish an empty partition at {self.uri(key)}")
        manifest = {**(manifest or {}), "files": files, "publish_id": uuid.uuid4().hex}
        try:
            self.backend.publish_dir(
                staged, key, manifest, lease_seconds=self.lease_seconds, wait_seconds=self.wait_seconds
            )
        except OSError as exc:
            _raise_if_full(exc, self.uri(key))
            raise
        return self.read_manifest(key)

    def write_partition(
        self,
        key: str,
        frames: dict[str, pa.Table],
        manifest: dict | None = None,
        extra_files: dict[str, bytes] | None = None,
    ) -> dict:
        """Write tables as Parquet (and optional extra files) and publish them as one partition."""
        with self.staging() as staged:
            rows = 0
            for name, table in frames.items():
                try:
                    pq.write_table(table, staged / name, compression="zstd", row_group_size=self.row_group_rows)
                except OSError as exc:
                    _raise_if_full(exc, self.uri(key))
                    raise
                rows += table.num_rows
            for name, data in (extra_files or {}).items():
                (staged / name).parent.mkdir(parents=True, exist_ok=True)
                (staged / name).write_bytes(data)
            return self.publish_partition(key, staged, {"row_count": rows, **(manifest or {})})

    # ---- mapped writers: parts staged outside the partition, published as one

    def parts_prefix(self, key: str, token: str) -> str:
        return f"{PARTS_DIR}/{_check_key(key)}/{token}"

    def stage_part(self, key: str, token: str, name: str, table: pa.Table) -> str:
        """Write one part of a partition that several tasks build (invisible to readers and globs)."""
        part_key = f"{self.parts_prefix(key, token)}/{name}"
        buffer = pa.BufferOutputStream()
        pq.write_table(table, buffer, compression="zstd", row_group_size=self.row_group_rows)
        self.write_bytes(part_key, buffer.getvalue().to_pybytes())
        return part_key

    def publish_staged(self, key: str, token: str, expected: list[str], manifest: dict | None = None) -> dict:
        """Publish the staged parts `expected` (all must exist) as the partition at `key`, then
        remove the staging prefix."""
        key = _check_key(key)
        prefix = self.parts_prefix(key, token)
        present = {k[len(prefix) + 1 :] for k in self.list_keys(prefix)}
        missing = sorted(set(expected) - present)
        if missing:
            raise ArtefactMissing(
                f"{self.uri(prefix)}: staged part(s) {missing[:5]} missing "
                f"({len(missing)} of {len(expected)}); rerun the tasks that write them"
            )
        files = sorted(expected)
        rows = sum(
            pq.ParquetFile(self.open_input(f"{prefix}/{f}")).metadata.num_rows for f in files if f.endswith(".parquet")
        )
        manifest = {"row_count": rows, **(manifest or {}), "files": files, "publish_id": uuid.uuid4().hex}
        if isinstance(self.backend, S3Backend):
            self.backend.publish_objects(
                {f: f"{prefix}/{f}" for f in files},
                key,
                manifest,
                lease_seconds=self.lease_seconds,
                wait_seconds=self.wait_seconds,
            )
            self.backend.delete_prefix(prefix)
        else:
            staged = self.backend.staged_parts_dir(prefix)
            for extra in set(present) - set(expected):
                (staged / extra).unlink(missing_ok=True)
            self.backend.publish_dir(staged, key, manifest)
            shutil.rmtree(staged, ignore_errors=True)
        return self.read_manifest(key)

    def open_input(self, key: str):
        """A seekable file for `key` (ranged GETs on S3), e.g. for pq.ParquetFile row-group reads."""
        key = _check_key(key)
        if isinstance(self.backend, S3Backend):
            try:
                return self.backend.arrow_fs().open_input_file(f"{self.backend.bucket}/{self.backend._key(key)}")
            except FileNotFoundError as exc:
                raise ArtefactMissing(f"no object at {self.uri(key)}") from exc
            except OSError as exc:
                raise StorageUnavailable(f"S3 open of {self.uri(key)} failed: {' '.join(str(exc).split())}") from exc
        try:
            return pa.OSFile(str(self.backend._path(key)))
        except FileNotFoundError as exc:
            raise ArtefactMissing(f"no object at {self.uri(key)}") from exc

    def list_objects(self, prefix: str = "") -> list[tuple[str, float, int]]:
        return self.backend.list_objects(_check_key(prefix))

    def delete_keys(self, keys: list[str]) -> None:
        self.backend.delete_keys([_check_key(k) for k in keys])

    def read_manifest(self, key: str) -> dict:
        try:
            return self.read_json(f"{_check_key(key)}/{MANIFEST}")
        except FileNotFoundError as exc:
            raise PartitionNotFound(f"no committed partition at {self.uri(key)}") from exc

    def partition_exists(self, key: str) -> bool:
        try:
            self.read_manifest(key)
            return True
        except PartitionNotFound:
            return False

    def read_partition(self, key: str) -> pa.Table:
        """Read the Parquet files a partition's manifest lists, as one table."""
        manifest = self.read_manifest(key)
        tables = []
        for name in manifest.get("files", []):
            if not name.endswith(".parquet"):
                continue
            with partition_file_checked(self.uri(key), name, "rerun the step that wrote it"):
                tables.append(pq.read_table(io.BytesIO(self.read_bytes(f"{key}/{name}"))))
        if not tables:
            raise StorageError(f"partition {self.uri(key)} has no Parquet files")
        table = pa.concat_tables(tables) if len(tables) > 1 else tables[0]
        check_row_count(self.uri(key), manifest, table.num_rows)
        return table

    def read_partition_file(self, key: str, name: str) -> bytes:
        """Read one file of a partition by the name it was staged under."""
        manifest = self.read_manifest(key)
        stored = manifest.get("file_map", {}).get(name, name)
        if stored not in manifest["files"]:
            raise FileNotFoundError(f"{name} not in partition {self.uri(key)}")
        return self.read_bytes(f"{key}/{stored}")

    def copy_partition(
        self, src: str, dst: str, extra_files: dict[str, bytes] | None = None, manifest: dict | None = None
    ) -> dict:
        """Publish a copy of partition `src` (plus extra files) at `dst`."""
        src_manifest = self.read_manifest(src)
        with self.staging() as staged:
            logical = {v: k for k, v in src_manifest.get("file_map", {}).items()}
            for name in src_manifest["files"]:
                dest = staged / logical.get(name, name)
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.write_bytes(self.read_bytes(f"{src}/{name}"))
            for name, data in (extra_files or {}).items():
                (staged / name).write_bytes(data)
            keep = {k: v for k, v in src_manifest.items() if k not in ("files", "file_map", "publish_id")}
            return self.publish_partition(dst, staged, {**keep, **(manifest or {}), "copied_from": self.uri(src)})


@contextlib.contextmanager
def partition_file_checked(uri: str, name: str, remedy: str) -> Iterator[None]:
    """A file a partition's manifest lists that is missing or unreadable is a damaged artefact, not a
    storage hiccup: an ArtefactError naming the partition, the file and what to do (`remedy`)."""
    try:
        yield
    except ArtefactMissing as exc:
        raise ArtefactError(
            f"{uri}: its manifest lists {name}, which is missing; the partition is damaged: {remedy}"
        ) from exc
    except (pa.ArrowInvalid, OSError) as exc:
        raise ArtefactError(f"{uri}/{name}: not a readable Parquet file ({exc}); {remedy}") from exc


def check_row_count(uri: str, manifest: dict, rows: int) -> None:
    """A manifest that states a row count must agree with its files."""
    expected = manifest.get("row_count")
    if expected is not None and int(expected) != rows:
        raise ArtefactError(
            f"{uri}: its files hold {rows} rows but its manifest says {expected}; the partition "
            "was changed outside the pipeline: rerun the step that wrote it"
        )


def _raise_if_full(exc: OSError, uri: str) -> None:
    """Disk full is not transient: fail without retries, naming where."""
    import errno

    if exc.errno in (errno.ENOSPC, errno.EDQUOT) or "No space left" in str(exc):
        raise StorageFull(
            errno.ENOSPC,
            f"no space left writing {uri}; nothing was published. Free space "
            "or point storage.root elsewhere, then rerun",
        ) from exc


def open_storage(root_uri: str, s3_options: S3Options | dict | None = None, **settings) -> Storage:
    if isinstance(s3_options, dict):
        s3_options = S3Options.from_mapping(s3_options)
    return Storage(root_uri, s3_options, **settings)
