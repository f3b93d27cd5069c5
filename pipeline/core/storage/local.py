"""Storage in a local directory. A partition is published by swapping the staged directory into
place with one rename (renameat2(RENAME_EXCHANGE) when it already exists): a reader sees the old
complete partition or the new complete one, never a mix."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import hashlib
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa

from pipeline.core.errors import ArtefactMissing, PreconditionFailed
from pipeline.core.storage.backend import MANIFEST, STAGING_DIR, raise_if_full

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
    """A directory: writes are temp file + rename, publishes swap the staged directory into place."""

    s3_options = None  # external s3:// URIs: boto3's chain

    def __init__(self, root: str):
        self.root = Path(root[len("file://") :] if root.startswith("file://") else root).resolve()
        self.local_root: Path | None = self.root

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
            raise_if_full(exc, self.uri(key))
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

    def open_input(self, key: str):
        try:
            return pa.OSFile(str(self._path(key)))
        except FileNotFoundError as exc:
            raise ArtefactMissing(f"no object at {self.uri(key)}") from exc

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

    def publish_dir(
        self, staged: Path, key: str, manifest: dict, lease_seconds: float = 0.0, wait_seconds: float = 0.0
    ) -> None:
        # One rename: no lease to take or wait for.
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

    def publish_parts(
        self,
        prefix: str,
        files: list[str],
        key: str,
        manifest: dict,
        lease_seconds: float = 0.0,
        wait_seconds: float = 0.0,
    ) -> None:
        staged = self._path(prefix)
        for extra in {k[len(prefix) + 1 :] for k in self.list_keys(prefix)} - set(files):
            (staged / extra).unlink(missing_ok=True)
        self.publish_dir(staged, key, manifest)
        shutil.rmtree(staged, ignore_errors=True)
