"""Garbage collection: what killed or failed writers leave behind, never committed data.

Removed when older than ``maintenance.gc_min_age_hours`` (the age keeps a writer that is
still running safe: its files are fresh):

* ``staging``: anything under ``_staging/`` (local staging directories, mapped scoring's
  staged parts, the old versions a local publish swapped out);
* ``temp_files``: ``.<name>.<id>.tmp`` files of interrupted local writes;
* ``unreferenced``: objects inside a partition that its ``_manifest.json`` does not list
  (an S3 writer killed mid-publish), and the files of a partition whose first publish
  was killed (a lease and no manifest);
* ``stale_leases``: publish leases whose holder is gone or expired;
* ``local_temp_dirs``: ``pipeline-stage-*`` directories in this machine's temp directory
  (S3 publishes stage there).

Files a manifest lists, manifests, and objects outside partitions (JSON records, aliases,
contracts, audit) are never touched.
"""

from __future__ import annotations

import logging
import posixpath
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from pipeline.core.settings import PipelineConfig
from pipeline.core.storage import LEASE, MANIFEST, STAGING_DIR, Storage, lease_is_free

log = logging.getLogger(__name__)

KINDS = ("staging", "temp_files", "unreferenced", "stale_leases", "local_temp_dirs")
LOCAL_TEMP_PREFIX = "pipeline-stage-"


def _is_temp_file(key: str) -> bool:
    name = posixpath.basename(key)
    return name.startswith(".") and name.endswith(".tmp")


def _newest_mtime(path: Path) -> float:
    newest = path.stat().st_mtime
    for p in path.rglob("*"):
        try:
            newest = max(newest, p.stat().st_mtime)
        except FileNotFoundError:
            continue
    return newest


def collect_garbage(
    config: PipelineConfig,
    storage: Storage,
    min_age_hours: float | None = None,
    dry_run: bool = False,
    now: float | None = None,
) -> dict:
    """`now` is the time storage objects are judged against (tests age them by moving it); this
    machine's temp directories are always judged by the clock, as other processes use them."""
    age_hours = config.maintenance.gc_min_age_hours if min_age_hours is None else float(min_age_hours)
    now = time.time() if now is None else now
    cutoff = now - age_hours * 3600
    found: dict[str, list[tuple[str, int]]] = {k: [] for k in KINDS}

    objects = storage.list_objects("")
    manifests = {posixpath.dirname(k) for k, _, _ in objects if posixpath.basename(k) == MANIFEST}
    leases = {posixpath.dirname(k): k for k, _, _ in objects if posixpath.basename(k) == LEASE}
    referenced: dict[str, set[str] | None] = {}  # None: an unreadable manifest

    def partition_of(key: str) -> str | None:
        d = posixpath.dirname(key)
        while d:
            if d in manifests or d in leases:
                return d
            d = posixpath.dirname(d)
        return None

    def lease_free(part: str) -> bool:
        if part not in leases:
            return True
        data, _ = storage.read_versioned(leases[part])
        return lease_is_free(data)

    for key, mtime, size in objects:
        if mtime > cutoff:
            continue
        if key == STAGING_DIR or key.startswith(STAGING_DIR + "/"):
            found["staging"].append((key, size))
            continue
        if _is_temp_file(key):
            found["temp_files"].append((key, size))
            continue
        part = partition_of(key)
        if part is None:
            continue  # not partition data: records, aliases, contracts... never collected
        name = key[len(part) + 1 :]
        if name == MANIFEST or posixpath.basename(name).startswith(".") and name != LEASE:
            continue
        if not lease_free(part):
            continue  # a live publish owns these
        if name == LEASE:
            found["stale_leases"].append((key, size))
            continue
        if part in manifests:
            if part not in referenced:
                try:
                    referenced[part] = set(storage.read_manifest(part).get("files", []))
                except Exception as exc:  # noqa: BLE001 - an unreadable manifest: leave the partition alone
                    log.warning("gc: skipping %s: %s", storage.uri(part), exc)
                    referenced[part] = None
            listed = referenced[part]
            if listed is None or name in listed:
                continue
        found["unreferenced"].append((key, size))

    temp_dirs: list[tuple[Path, int]] = []
    for path in Path(tempfile.gettempdir()).glob(f"{LOCAL_TEMP_PREFIX}*"):
        try:
            if path.is_dir() and _newest_mtime(path) <= time.time() - age_hours * 3600:
                temp_dirs.append((path, sum(p.stat().st_size for p in path.rglob("*") if p.is_file())))
        except FileNotFoundError:
            continue
    found["local_temp_dirs"] = [(str(p), size) for p, size in temp_dirs]

    if not dry_run:
        old_dirs = _old_local_staging_dirs(storage, cutoff)  # before deleting files changes their mtimes
        for kind in ("staging", "temp_files", "unreferenced", "stale_leases"):
            storage.delete_keys([k for k, _ in found[kind]])
        for path, _ in temp_dirs:
            shutil.rmtree(path, ignore_errors=True)
        for path in old_dirs:
            shutil.rmtree(path, ignore_errors=True)

    summary: dict[str, dict[str, Any]] = {
        kind: {"count": len(items), "bytes": sum(s for _, s in items), "examples": [k for k, _ in items[:5]]}
        for kind, items in found.items()
    }
    removed = sum(v["count"] for v in summary.values())
    result = {
        "root": storage.uri(),
        "min_age_hours": age_hours,
        "dry_run": dry_run,
        "removed" if not dry_run else "would_remove": removed,
        "bytes": sum(v["bytes"] for v in summary.values()),
        "by_kind": summary,
    }
    log.info(
        "gc %s: %s %d object(s), %d bytes, older than %gh (%s)",
        storage.uri(),
        "would remove" if dry_run else "removed",
        removed,
        result["bytes"],
        age_hours,
        ", ".join(f"{k} {v['count']}" for k, v in summary.items() if v["count"]) or "nothing",
    )
    if removed and not dry_run:
        from pipeline.ops import audit, metrics

        metrics.incr("gc_objects_removed", removed)
        audit.record(
            storage,
            "maintenance",
            f"garbage collection removed {removed} object(s)",
            f"older than {age_hours:g}h and not referenced by any manifest",
            by_kind={k: v["count"] for k, v in summary.items()},
        )
    return result


def _old_local_staging_dirs(storage: Storage, cutoff: float) -> list[Path]:
    """Directories under a local root's _staging/ with nothing newer than the cutoff in them."""
    if storage.local_root is None:
        return []
    base = storage.local_root / STAGING_DIR
    out: list[Path] = []
    pending = [p for p in base.iterdir() if p.is_dir()] if base.is_dir() else []
    while pending:
        path = pending.pop()
        try:
            if _newest_mtime(path) <= cutoff:
                out.append(path)
            else:
                pending += [p for p in path.iterdir() if p.is_dir()]
        except FileNotFoundError:
            continue
    return out
