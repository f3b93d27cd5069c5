"""Garbage collection removes what killed writers leave behind, never committed data."""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pytest
from conftest import write_params

from pipeline.core.settings import load_config
from pipeline.core.storage import open_storage
from pipeline.ops.maintenance import collect_garbage

TWO_DAYS = 2 * 24 * 3600


def _age(path: Path, seconds: float) -> None:
    old = time.time() - seconds
    for p in [path, *path.rglob("*")] if path.is_dir() else [path]:
        os.utime(p, (old, old))


def _committed(storage):
    table = pa.table({"id": list(range(10)), "x": [float(i) for i in range(10)]})
    storage.write_partition("predictions/m/dt=2025-01-01", {"part-00000.parquet": table})
    storage.write_json("models/m/aliases/champion.json", {"version": "v1"})
    return table


def test_local_leftovers_older_than_the_age_are_removed_committed_data_stays(tmp_path):
    config = load_config(write_params(tmp_path))
    storage = open_storage(str(tmp_path / "storage"))
    table = _committed(storage)
    root = tmp_path / "storage"
    old_stage = root / "_staging" / "stage-killed"
    old_stage.mkdir(parents=True)
    (old_stage / "part-00000.parquet").write_bytes(b"half written")
    fresh_stage = root / "_staging" / "stage-running"
    fresh_stage.mkdir(parents=True)
    (fresh_stage / "part-00000.parquet").write_bytes(b"being written now")
    old_tmp = root / "validation" / ".dt=2025-01-01.json.0123abcd.tmp"
    old_tmp.parent.mkdir(parents=True)
    old_tmp.write_bytes(b"{")
    orphan = root / "predictions/m/dt=2025-01-01/part-00000-deadbeef0000.parquet"
    orphan.write_bytes(b"orphan of a killed writer")
    system_tmp = Path(tempfile.mkdtemp(prefix="pipeline-stage-"))
    (system_tmp / "x.parquet").write_bytes(b"left by a killed S3 publish")
    for path in (old_stage, old_tmp, orphan, system_tmp):
        _age(path, TWO_DAYS)

    dry = collect_garbage(config, storage, dry_run=True)
    assert dry["would_remove"] >= 4 and old_stage.exists() and orphan.exists()  # nothing removed yet
    assert dry["by_kind"]["local_temp_dirs"]["count"] >= 1

    result = collect_garbage(config, storage)
    assert result["by_kind"]["staging"]["count"] == 1 and result["by_kind"]["temp_files"]["count"] == 1
    assert result["by_kind"]["unreferenced"]["count"] == 1
    assert not old_stage.exists() and not old_tmp.exists() and not orphan.exists() and not system_tmp.exists()
    assert fresh_stage.exists(), "a staging dir younger than the age belongs to a running writer"
    assert storage.read_partition("predictions/m/dt=2025-01-01").equals(table)
    assert storage.read_json("models/m/aliases/champion.json") == {"version": "v1"}
    assert storage.list_keys("audit"), "a collection that removed something is audited"


def test_s3_unreferenced_objects_stale_leases_and_staged_parts(s3_env, tmp_path):
    config = load_config(write_params(tmp_path))
    storage = open_storage(f"s3://{s3_env['bucket']}/root")
    table = _committed(storage)
    key = "predictions/m/dt=2025-01-01"
    storage.write_bytes(f"{key}/part-00000-0123456789ab.parquet", b"orphan")
    storage.write_bytes(f"{key}/_publishing.json", b'{"owner": "x", "host": "gone", "pid": 1, "expires_at": 0}')
    storage.write_bytes("_staging/parts/predictions/m/dt=2025-01-02/abc/part-00000.parquet", b"staged part")
    storage.write_bytes("predictions/m/dt=2025-01-03/part-00000-aaaaaaaaaaaa.parquet", b"first publish killed")
    storage.write_bytes("predictions/m/dt=2025-01-03/_publishing.json", b'{"expires_at": 0}')

    fresh = collect_garbage(config, storage)  # everything is seconds old: nothing qualifies
    assert fresh["removed"] == 0

    later = time.time() + 2 * TWO_DAYS
    result = collect_garbage(config, storage, now=later)
    kinds = {k: v["count"] for k, v in result["by_kind"].items()}
    assert kinds["unreferenced"] == 2 and kinds["stale_leases"] == 2 and kinds["staging"] == 1, kinds
    assert storage.list_keys("predictions/m/dt=2025-01-03") == [] and storage.list_keys("_staging") == []
    manifest = storage.read_manifest(key)
    assert sorted(storage.list_keys(key)) == sorted(
        [f"{key}/{f}" for f in manifest["files"]] + [f"{key}/_manifest.json"]
    )
    assert storage.read_partition(key).equals(table)


@pytest.mark.e2e
def test_maintenance_dag_runs_the_collection(dagbag, tmp_path, monkeypatch):
    from helpers import run_dag

    params = write_params(tmp_path)
    monkeypatch.setenv("PIPELINE_PARAMS", str(params))
    storage = open_storage(str(tmp_path / "storage"))
    _committed(storage)
    leftover = tmp_path / "storage" / "_staging" / "stage-old"
    leftover.mkdir(parents=True)
    (leftover / "f").write_bytes(b"x")
    _age(leftover, TWO_DAYS)
    assert run_dag(dagbag, "maintenance", "2025-01-02") == "success"
    assert not leftover.exists() and storage.partition_exists("predictions/m/dt=2025-01-01")
