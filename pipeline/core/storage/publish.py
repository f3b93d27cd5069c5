"""The publish protocol for object stores, which have no rename and no multi-key transaction.

A publish first takes the partition's lease (``_publishing.json``, created with ``If-None-Match: *``,
renewed with ``If-Match`` while uploading), so one writer at a time publishes a partition; a second
writer waits for it. Under the lease: new files are uploaded under names unique to this publish,
``_manifest.json`` is written with ``If-Match`` on the version read at the start (the commit point; a
single PUT is atomic), then every object of the partition that the new manifest does not list is
deleted (the previous version, and debris of writers killed earlier), then the lease is released. A
writer killed mid-publish leaves its lease; it expires after ``publish_lease_seconds``, or at once for
the next writer on the same host when the holder's process is gone. A writer that loses its lease or
the manifest condition deletes what it uploaded and fails (transient: it is retried).

It needs only a backend's conditional reads and writes (``read_versioned``, ``write_if``), listing
and deletion.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pipeline.core.errors import PreconditionFailed, PublishConflict
from pipeline.core.storage.backend import LEASE, MANIFEST, Backend

log = logging.getLogger(__name__)


def _lease_body(owner: str, lease_seconds: float) -> bytes:
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


def _acquire_lease(backend: Backend, key: str, lease_seconds: float, wait_seconds: float) -> _Lease:
    lease_key = f"{key}/{LEASE}"
    owner = uuid.uuid4().hex
    deadline = time.monotonic() + wait_seconds
    delay = 0.05
    announced = False
    while True:
        data, etag = backend.read_versioned(lease_key)
        held = _parse_lease(data)
        if data is None or _lease_is_free(held):
            try:
                tag = backend.write_if(lease_key, _lease_body(owner, lease_seconds), etag)
                return _Lease(lease_key, owner, tag, lease_seconds, time.monotonic())
            except PreconditionFailed:
                pass  # another writer got it first
        if not announced:
            log.info(
                "waiting for the publish lease of %s (held by %s pid %s)",
                backend.uri(key),
                held.get("host"),
                held.get("pid"),
            )
            announced = True
        if time.monotonic() > deadline:
            raise PublishConflict(
                f"{backend.uri(key)} is being published by {held.get('host')} pid {held.get('pid')} (lease "
                f"{LEASE} until {_iso(held.get('expires_at'))}); gave up after {wait_seconds:.0f}s. Retry; "
                "a writer killed mid-publish frees it when the lease expires"
            )
        time.sleep(delay)
        delay = min(delay * 1.5, 1.0)


def _renew_lease(backend: Backend, lease: _Lease, force: bool = False) -> None:
    if not force and time.monotonic() - lease.renewed < lease.seconds / 3:
        return
    try:
        lease.etag = backend.write_if(lease.key, _lease_body(lease.owner, lease.seconds), lease.etag)
        lease.renewed = time.monotonic()
    except PreconditionFailed as exc:
        raise PublishConflict(f"lost the publish lease {backend.uri(lease.key)} to another writer") from exc


def _release_lease(backend: Backend, lease: _Lease) -> None:
    data, etag = backend.read_versioned(lease.key)
    if data is not None and _parse_lease(data).get("owner") == lease.owner:
        backend.delete_keys([lease.key])


def publish_under_lease(
    backend: Backend,
    key: str,
    manifest: dict,
    sources: dict[str, Any],
    put: Callable[[Any, str], None],
    lease_seconds: float = 120.0,
    wait_seconds: float = 600.0,
) -> None:
    """Under the partition's lease: put each new file (`sources`: name in the partition -> what
    `put(source, key)` writes there) under a name unique to this publish, commit the manifest
    conditionally, then remove every object the manifest does not list."""
    lease = _acquire_lease(backend, key, lease_seconds, wait_seconds)
    uploaded: list[str] = []
    try:
        _, manifest_tag = backend.read_versioned(f"{key}/{MANIFEST}")
        token = uuid.uuid4().hex[:12]
        renamed = {}
        for rel, source in sorted(sources.items()):
            renamed[rel] = unique_name(rel, token)
            uploaded.append(f"{key}/{renamed[rel]}")
            put(source, f"{key}/{renamed[rel]}")
            _renew_lease(backend, lease)
        _renew_lease(backend, lease, force=True)  # still ours right before the commit point
        manifest = dict(manifest)
        manifest["files"] = [renamed.get(f, f) for f in manifest.get("files", [])]
        manifest["file_map"] = {f: renamed.get(f, f) for f in renamed}
        body = json.dumps(manifest, indent=2, sort_keys=True).encode()
        try:
            backend.write_if(f"{key}/{MANIFEST}", body, manifest_tag)
        except PreconditionFailed as exc:
            raise PublishConflict(
                f"{backend.uri(key)}: the manifest changed under the lease; this publish lost and removed its files"
            ) from exc
    except BaseException:
        backend.delete_keys(uploaded)  # nothing was committed: leave the previous version as it was
        with contextlib.suppress(Exception):
            _release_lease(backend, lease)
        raise
    # Committed. Remove everything the manifest does not list: the previous version and the
    # debris of writers killed earlier (only a lease holder uploads here, and we hold it).
    keep = {f"{key}/{name}" for name in manifest["files"]} | {f"{key}/{MANIFEST}", lease.key}
    backend.delete_keys([k for k in backend.list_keys(key) if k not in keep and _directly_in(k, key, manifest)])
    _release_lease(backend, lease)


@dataclass
class _Lease:
    key: str
    owner: str
    etag: str
    seconds: float
    renewed: float


def unique_name(rel: str, token: str) -> str:
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
