"""What every storage backend offers (local directory, S3), the reserved names in a partition,
and the checks every key passes. The publish protocol sits on top (pipeline/core/storage/store.py)."""

from __future__ import annotations

import errno
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Protocol

from pipeline.core.errors import StorageError, StorageFull

MANIFEST = "_manifest.json"
LEASE = "_publishing.json"
STAGING_DIR = "_staging"
# Mapped writers' parts: <root>/_staging/parts/<partition key>/<token>/<name>
PARTS_DIR = f"{STAGING_DIR}/parts"


class Backend(Protocol):
    """Keys are POSIX-style paths relative to the root, already checked by :func:`check_key`."""

    s3_options: Any  # how external s3:// URIs are reached (None: boto3's chain)
    local_root: Path | None  # the root directory when the storage is a local one

    def uri(self, key: str) -> str: ...
    def exists(self, key: str) -> bool: ...
    def read_bytes(self, key: str) -> bytes: ...
    def write_bytes(self, key: str, data: bytes) -> None: ...
    def read_versioned(self, key: str) -> tuple[bytes | None, str | None]: ...
    def write_if(self, key: str, data: bytes, expected: str | None) -> str: ...
    def list_keys(self, prefix: str) -> list[str]: ...
    def list_objects(self, prefix: str) -> list[tuple[str, float, int]]: ...
    def list_children(self, prefix: str) -> list[str]: ...
    def delete_keys(self, keys: list[str]) -> None: ...
    def delete_prefix(self, key: str) -> None: ...
    def open_input(self, key: str) -> Any: ...
    def staging(self) -> AbstractContextManager[Path]: ...

    def publish_dir(
        self, staged: Path, key: str, manifest: dict, lease_seconds: float = ..., wait_seconds: float = ...
    ) -> None:
        """Atomically replace the partition at `key` with the files of the local directory `staged`."""

    def publish_parts(
        self, prefix: str, files: list[str], key: str, manifest: dict, lease_seconds: float = ..., wait_seconds: float = ...
    ) -> None:
        """Atomically replace the partition at `key` with the staged parts `files` under `prefix`,
        then remove the prefix."""


def check_key(key: str) -> str:
    key = key.strip("/")
    if any(part in ("..", ".") for part in key.split("/")):
        raise StorageError(f"storage key may not contain '.' or '..' parts: {key!r}")
    return key


def raise_if_full(exc: OSError, uri: str) -> None:
    """Disk full is not transient: fail without retries, naming where."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT) or "No space left" in str(exc):
        raise StorageFull(
            errno.ENOSPC,
            f"no space left writing {uri}; nothing was published. Free space "
            "or point storage.root elsewhere, then rerun",
        ) from exc
