"""One storage layer addressed by URI: a local directory or ``s3://bucket/prefix``.

Keys are POSIX-style paths relative to the storage root (``raw/credit/dt=2025-01-01``).

Partitions are published atomically. A writer fills a local *staging directory*
and then calls :meth:`Storage.publish_partition`:

* local: the staging directory lives on the same filesystem as the root and is
  swapped into place with one ``rename`` (``renameat2(RENAME_EXCHANGE)`` when the
  partition already exists), so a reader sees the old complete partition or the
  new complete one, never a mix;
* S3 has no rename and no multi-key transaction: new files are uploaded under
  names unique to this publish, the partition's ``_manifest.json`` is written last
  (the commit point, a single PUT is atomic), then files of the previous version
  are deleted. Readers that go through the manifest (every reader in this
  package) never see a partial partition.

A partition without ``_manifest.json`` does not exist as far as readers care.
"""
from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import io
import hashlib
import json
import os
import shutil
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from .errors import ArtefactError, ArtefactMissing, PipelineError, StorageFull

MANIFEST = "_manifest.json"
STAGING_DIR = "_staging"


class StorageError(RuntimeError):
    """A storage operation failed or found something it cannot accept."""


class PreconditionFailed(StorageError):
    """A conditional write lost: the object changed since it was read (another writer won)."""


class PartitionNotFound(StorageError, PipelineError):
    """No committed partition (no manifest) at that key."""


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
    def from_mapping(cls, values: dict[str, Any] | None) -> "S3Options":
        values = values or {}
        fields = cls.__dataclass_fields__
        return cls(**{k: values[k] for k in fields if values.get(k) not in (None, "")})


def _split_s3(uri: str) -> tuple[str, str]:
    rest = uri[len("s3://"):]
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
        self.root = Path(root[len("file://"):] if root.startswith("file://") else root).resolve()

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
        return sorted(
            str(p.relative_to(self.root)).replace(os.sep, "/") for p in base.rglob("*") if p.is_file()
        )

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

    def publish_dir(self, staged: Path, key: str, manifest: dict) -> None:
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

        condition = {"IfMatch": expected} if expected else {"IfNoneMatch": "*"}
        try:
            return self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data, **condition)["ETag"]
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
                names.add(cp["Prefix"][len(full):].rstrip("/"))
            for obj in page.get("Contents", []):
                names.add(obj["Key"][len(full):])
        return sorted(n for n in names if n and not n.startswith("."))

    @contextlib.contextmanager
    def staging(self) -> Iterator[Path]:
        with tempfile.TemporaryDirectory(prefix="pipeline-stage-") as tmp:
            yield Path(tmp)

    def _delete(self, keys: list[str]) -> None:
        for i in range(0, len(keys), 1000):
            chunk = [{"Key": self._key(k)} for k in keys[i:i + 1000]]
            if chunk:
                self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": chunk, "Quiet": True})

    def publish_dir(self, staged: Path, key: str, manifest: dict) -> None:
        token = uuid.uuid4().hex[:12]
        before = set(self.list_keys(key))
        uploaded: list[str] = []
        renamed: dict[str, str] = {}
        try:
            for path in sorted(p for p in staged.rglob("*") if p.is_file()):
                rel = str(path.relative_to(staged)).replace(os.sep, "/")
                stem, dot, ext = rel.rpartition(".")
                unique = f"{stem}-{token}.{ext}" if dot else f"{rel}-{token}"
                obj = f"{key}/{unique}"
                self.client.upload_file(str(path), self.bucket, self._key(obj))
                uploaded.append(obj)
                renamed[rel] = unique
            manifest = dict(manifest)
            manifest["files"] = [renamed.get(f, f) for f in manifest.get("files", [])]
            manifest["file_map"] = {f: renamed.get(f, f) for f in renamed}
            self.write_bytes(f"{key}/{MANIFEST}", json.dumps(manifest, indent=2, sort_keys=True).encode())
        except BaseException:
            self._delete(uploaded)  # nothing was committed: leave the old version as it was
            raise
        # Committed. Remove the previous version's files.
        self._delete(sorted(before - set(uploaded) - {f"{key}/{MANIFEST}"}))

    def delete_prefix(self, key: str) -> None:
        keys = self.list_keys(key)
        manifest = f"{key}/{MANIFEST}"
        if manifest in keys:  # uncommit first, so readers stop seeing it at once
            self._delete([manifest])
        self._delete([k for k in keys if k != manifest])


# --------------------------------------------------------------------------- facade


class Storage:
    """Reads and writes by key under one root URI."""

    def __init__(self, root_uri: str, s3_options: S3Options | None = None):
        self.root_uri = root_uri
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
            bucket, key = _split_s3(uri)
            options = self.backend.options if isinstance(self.backend, S3Backend) else None
            return S3Backend(f"s3://{bucket}", options).read_bytes(key)
        with open(uri, "rb") as fh:
            return fh.read()

    def _external_s3(self, uri: str) -> tuple["S3Backend", str]:
        bucket, key = _split_s3(uri)
        options = self.backend.options if isinstance(self.backend, S3Backend) else None
        return S3Backend(f"s3://{bucket}", options), key

    def external_version(self, uri: str) -> str | None:
        """A tag that changes whenever the file at `uri` changes (None if it does not exist)."""
        if uri.startswith("s3://"):
            backend, key = self._external_s3(uri)
            try:
                head = backend.client.head_object(Bucket=backend.bucket, Key=key)
            except backend.client.exceptions.ClientError as exc:
                if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                    return None
                raise
            return f"{head['ContentLength']}-{head['ETag']}"
        try:
            st = os.stat(uri)
        except FileNotFoundError:
            return None
        return f"{st.st_size}-{st.st_mtime_ns}"

    def external_exists(self, uri: str) -> bool:
        return self.external_version(uri) is not None

    def list_external(self, prefix_uri: str) -> list[str]:
        """s3:// URIs of every object whose key starts with the prefix (no directory semantics)."""
        backend, prefix = self._external_s3(prefix_uri)
        out = []
        for page in backend.client.get_paginator("list_objects_v2").paginate(Bucket=backend.bucket, Prefix=prefix):
            out += [f"s3://{backend.bucket}/{obj['Key']}" for obj in page.get("Contents", [])]
        return sorted(out)

    def read_json(self, key: str) -> Any:
        data = self.read_bytes(key)
        try:
            return json.loads(data)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ArtefactError(f"{self.uri(key)}: not valid JSON ({exc}); restore it from a backup or "
                                "rerun the step that wrote it") from exc

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
            for p in staged.rglob("*") if p.is_file() and p.name != MANIFEST
        )
        if not files:
            raise StorageError(f"refusing to publish an empty partition at {self.uri(key)}")
        manifest = {**(manifest or {}), "files": files, "publish_id": uuid.uuid4().hex}
        try:
            self.backend.publish_dir(staged, key, manifest)
        except OSError as exc:
            _raise_if_full(exc, self.uri(key))
            raise
        return self.read_manifest(key)

    def write_partition(self, key: str, frames: dict[str, "pa.Table"], manifest: dict | None = None,
                        extra_files: dict[str, bytes] | None = None) -> dict:
        """Write tables as Parquet (and optional extra files) and publish them as one partition."""
        with self.staging() as staged:
            rows = 0
            for name, table in frames.items():
                try:
                    pq.write_table(table, staged / name, compression="zstd")
                except OSError as exc:
                    _raise_if_full(exc, self.uri(key))
                    raise
                rows += table.num_rows
            for name, data in (extra_files or {}).items():
                (staged / name).parent.mkdir(parents=True, exist_ok=True)
                (staged / name).write_bytes(data)
            return self.publish_partition(key, staged, {"row_count": rows, **(manifest or {})})

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
        tables = [
            pq.read_table(io.BytesIO(self.read_bytes(f"{key}/{name}")))
            for name in manifest["files"] if name.endswith(".parquet")
        ]
        if not tables:
            raise StorageError(f"partition {self.uri(key)} has no Parquet files")
        return pa.concat_tables(tables) if len(tables) > 1 else tables[0]

    def read_partition_file(self, key: str, name: str) -> bytes:
        """Read one file of a partition by the name it was staged under."""
        manifest = self.read_manifest(key)
        stored = manifest.get("file_map", {}).get(name, name)
        if stored not in manifest["files"]:
            raise FileNotFoundError(f"{name} not in partition {self.uri(key)}")
        return self.read_bytes(f"{key}/{stored}")

    def copy_partition(self, src: str, dst: str, extra_files: dict[str, bytes] | None = None,
                       manifest: dict | None = None) -> dict:
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


def _raise_if_full(exc: OSError, uri: str) -> None:
    """Disk full is not transient: fail without retries, naming where."""
    import errno

    if exc.errno in (errno.ENOSPC, errno.EDQUOT) or "No space left" in str(exc):
        raise StorageFull(errno.ENOSPC, f"no space left writing {uri}; nothing was published. Free space "
                                        "or point storage.root elsewhere, then rerun") from exc


def open_storage(root_uri: str, s3_options: S3Options | dict | None = None) -> Storage:
    if isinstance(s3_options, dict):
        s3_options = S3Options.from_mapping(s3_options)
    return Storage(root_uri, s3_options)
