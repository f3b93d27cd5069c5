"""The storage facade every stage uses: keys under one root URI, JSON and Parquet partitions published
atomically (through the backend's publish), mapped writers' parts, and files outside the root."""

from __future__ import annotations

import contextlib
import io
import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.core.errors import ArtefactError, ArtefactMissing, PartitionNotFound, StorageError
from pipeline.core.storage import external
from pipeline.core.storage.backend import MANIFEST, PARTS_DIR, Backend, check_key, raise_if_full
from pipeline.core.storage.local import LocalBackend
from pipeline.core.storage.s3 import S3Backend, S3Options


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
        self.backend: Backend = backend_for(root_uri, s3_options)

    @property
    def s3_options(self) -> S3Options | None:
        """How this storage reaches S3 (also used for s3:// URIs outside its root)."""
        return self.backend.s3_options

    @property
    def local_root(self) -> Path | None:
        """The root directory of a local storage (None on an object store)."""
        return self.backend.local_root

    def uri(self, key: str = "") -> str:
        return self.backend.uri(check_key(key))

    def exists(self, key: str) -> bool:
        return self.backend.exists(check_key(key))

    def read_bytes(self, key: str) -> bytes:
        try:
            return self.backend.read_bytes(check_key(key))
        except FileNotFoundError as exc:
            raise ArtefactMissing(str(exc)) from exc

    def write_bytes(self, key: str, data: bytes) -> None:
        self.backend.write_bytes(check_key(key), data)

    # ---- files outside the root (the landing area), reached with this storage's S3 settings

    def read_external(self, uri: str) -> bytes:
        return external.read(uri, self.backend.s3_options)

    def external_version(self, uri: str) -> str | None:
        """A tag that changes whenever the file at `uri` changes (None if it does not exist)."""
        return external.version(uri, self.backend.s3_options)

    def external_size(self, uri: str) -> int | None:
        """Size in bytes of the file at `uri` (None if it does not exist), read without fetching it."""
        version = self.external_version(uri)
        return None if version is None else int(version.split("-", 1)[0])

    def external_exists(self, uri: str) -> bool:
        return self.external_version(uri) is not None

    def list_external(self, pattern: str) -> list[str]:
        """The files matching `pattern` (a path or URI, with glob characters or not), sorted."""
        return external.matching(pattern, self.backend.s3_options)

    def list_external_modified(self, pattern: str) -> list[tuple[str, float]]:
        """The files matching the glob `pattern`, sorted, each with its last-modified time (epoch seconds)."""
        return external.modified(pattern, self.backend.s3_options)

    def open_external(self, uri: str) -> Any:
        """A stream of the file at `uri` (gzip inflated when it ends in .gz)."""
        return external.open_stream(uri, self.backend.s3_options)

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
        data, tag = self.backend.read_versioned(check_key(key))
        return (json.loads(data) if data is not None else None), tag

    def write_json_if(self, key: str, value: Any, expected: str | None) -> str:
        """Compare-and-swap: write only if the object is still at version `expected` (None: absent);
        raises PreconditionFailed otherwise. Returns the new version tag."""
        data = json.dumps(value, indent=2, sort_keys=True, default=str).encode()
        return self.backend.write_if(check_key(key), data, expected)

    def write_json(self, key: str, value: Any) -> None:
        self.write_bytes(key, json.dumps(value, indent=2, sort_keys=True, default=str).encode())

    def list_keys(self, prefix: str) -> list[str]:
        return self.backend.list_keys(check_key(prefix))

    def list_children(self, prefix: str) -> list[str]:
        return self.backend.list_children(check_key(prefix))

    def delete(self, key: str) -> None:
        self.backend.delete_prefix(check_key(key))

    # ---- partitions

    @contextlib.contextmanager
    def staging(self) -> Iterator[Path]:
        """A local directory to write a partition's files into before publishing."""
        with self.backend.staging() as path:
            yield path

    def publish_partition(self, key: str, staged: Path, manifest: dict | None = None) -> dict:
        """Atomically replace the partition at `key` with the files in `staged`."""
        key = check_key(key)
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
            raise_if_full(exc, self.uri(key))
            raise
        return self.read_manifest(key)

    def parquet_options(self, table: pa.Table) -> dict:
        """zstd, row groups of `row_group_rows`, dictionaries for text columns only (a dictionary of
        float values rarely pays: it doubled the write time of a day's batch)."""
        text = [f.name for f in table.schema if pa.types.is_string(f.type) or pa.types.is_large_string(f.type)]
        return {"compression": "zstd", "row_group_size": self.row_group_rows, "use_dictionary": text}

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
                    pq.write_table(table, staged / name, **self.parquet_options(table))
                except OSError as exc:
                    raise_if_full(exc, self.uri(key))
                    raise
                rows += table.num_rows
            for name, data in (extra_files or {}).items():
                (staged / name).parent.mkdir(parents=True, exist_ok=True)
                (staged / name).write_bytes(data)
            return self.publish_partition(key, staged, {"row_count": rows, **(manifest or {})})

    # ---- mapped writers: parts staged outside the partition, published as one

    def parts_prefix(self, key: str, token: str) -> str:
        return f"{PARTS_DIR}/{check_key(key)}/{token}"

    def stage_part(self, key: str, token: str, name: str, table: pa.Table) -> str:
        """Write one part of a partition that several tasks build (invisible to readers and globs)."""
        part_key = f"{self.parts_prefix(key, token)}/{name}"
        buffer = pa.BufferOutputStream()
        pq.write_table(table, buffer, **self.parquet_options(table))
        self.write_bytes(part_key, buffer.getvalue().to_pybytes())
        return part_key

    def publish_staged(self, key: str, token: str, expected: list[str], manifest: dict | None = None) -> dict:
        """Publish the staged parts `expected` (all must exist) as the partition at `key`, then
        remove the staging prefix."""
        key = check_key(key)
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
        self.backend.publish_parts(
            prefix, files, key, manifest, lease_seconds=self.lease_seconds, wait_seconds=self.wait_seconds
        )
        return self.read_manifest(key)

    def open_input(self, key: str):
        """A seekable file for `key` (ranged GETs on S3), e.g. for pq.ParquetFile row-group reads."""
        return self.backend.open_input(check_key(key))

    def read_versioned(self, key: str) -> tuple[bytes | None, str | None]:
        return self.backend.read_versioned(check_key(key))

    def list_objects(self, prefix: str = "") -> list[tuple[str, float, int]]:
        return self.backend.list_objects(check_key(prefix))

    def delete_keys(self, keys: list[str]) -> None:
        self.backend.delete_keys([check_key(k) for k in keys])

    def read_manifest(self, key: str) -> dict:
        try:
            return self.read_json(f"{check_key(key)}/{MANIFEST}")
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


def backend_for(root_uri: str, s3_options: S3Options | None = None) -> Backend:
    if root_uri.startswith("s3://"):
        return S3Backend(root_uri, s3_options)
    if "://" in root_uri and not root_uri.startswith("file://"):
        raise StorageError(f"unsupported storage URI scheme: {root_uri!r} (use a path or s3://)")
    return LocalBackend(root_uri)


def open_storage(root_uri: str, s3_options: S3Options | dict | None = None, **settings) -> Storage:
    if isinstance(s3_options, dict):
        s3_options = S3Options.from_mapping(s3_options)
    return Storage(root_uri, s3_options, **settings)
