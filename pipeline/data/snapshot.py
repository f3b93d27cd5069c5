"""The training snapshot: validated features of the labelled days in the window, joined
to their labels, with a time-based train/holdout split.

It is published to storage (``snapshots/<dataset>/<snapshot_id>/``, where the
training and evaluation tasks read it, on whatever worker they run) and, when DVC
is enabled, written to the DVC workspace directory that ``data.dvc`` tracks, then
``dvc add``-ed and pushed to the DVC remote. The model manifest records both the
snapshot's sha256 and DVC's md5, so a model can be traced to its data version.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import io
import json
import logging
import os
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from pipeline.core import layout
from pipeline.core.errors import (
    PartitionNotFound,
    SnapshotError,
    ValidationFailed,
)
from pipeline.core.settings import PipelineConfig
from pipeline.core.storage import Storage
from pipeline.data.source import Schema
from pipeline.data.validation import require_validated

log = logging.getLogger(__name__)

SPLIT_COLUMN = "_split"
DAY_COLUMN = "_day"


def labelled_window(config: PipelineConfig, as_of: dt.date) -> list[dt.date]:
    """The most recent `window_days` days whose labels are known as of `as_of`."""
    last = as_of - dt.timedelta(days=config.dataset.batching.label_delay_days)
    return [last - dt.timedelta(days=i) for i in reversed(range(config.training.window_days))]


def _window_frames(config: PipelineConfig, storage: Storage, days: list[dt.date]):
    ds = config.dataset
    frames, excluded, schema = [], [], None
    for day in days:
        try:
            record = storage.read_json(layout.validation_record(ds.name, day))
        except FileNotFoundError:
            record = None
        if record is not None and not record.get("success"):
            excluded.append({"day": day.isoformat(), "reason": "quarantined", "where": record.get("quarantine")})
            continue
        try:
            manifest = require_validated(config, storage, day)
        except (PartitionNotFound, ValidationFailed) as exc:
            raise SnapshotError(f"training window day {day} is not ingested and validated: {exc}") from exc
        schema = Schema.from_dict(manifest["schema"])
        try:
            labels = storage.read_partition(layout.labels_partition(ds.name, day)).to_pandas()
        except PartitionNotFound as exc:
            raise SnapshotError(f"training window day {day} has no labels yet: {exc}") from exc
        features = storage.read_partition(layout.raw_partition(ds.name, day)).to_pandas()
        joined = features.merge(labels, on=schema.id_column, how="inner", validate="one_to_one")
        if len(joined) != len(features):
            log.warning(
                "%s: %d of %d rows have no label and are left out", day, len(features) - len(joined), len(features)
            )
        joined[DAY_COLUMN] = day.isoformat()
        frames.append(joined)
    return frames, excluded, schema


def _contract_summary(config: PipelineConfig, storage: Storage) -> dict | None:
    from pipeline.data import contract as contracts

    current = contracts.current(config, storage)
    return current.summary() if current else None


def build_snapshot(config: PipelineConfig, storage: Storage, as_of: dt.date, s3_options: dict | None = None) -> dict:
    ds = config.dataset
    days = labelled_window(config, as_of)
    frames, excluded, schema = _window_frames(config, storage, days)
    if not frames:
        raise SnapshotError(f"no usable days in the training window {days[0]}..{days[-1]}")
    frame = pd.concat(frames, ignore_index=True)
    # Pii never leaves the raw zone.
    frame = frame.drop(columns=[c for c in schema.pii if c in frame.columns])
    holdout_from = days[-config.training.holdout_days].isoformat()
    frame[SPLIT_COLUMN] = (frame[DAY_COLUMN] >= holdout_from).map({True: "holdout", False: "train"})
    frame = frame.sort_values([DAY_COLUMN, schema.id_column], kind="mergesort").reset_index(drop=True)
    counts = frame[SPLIT_COLUMN].value_counts().to_dict()
    if counts.get("train", 0) == 0 or counts.get("holdout", 0) == 0:
        raise SnapshotError(f"snapshot needs rows in both train and holdout, got {counts}")
    positives = int((frame[ds.target.column].astype(str) == ds.target.positive_class).sum())
    if positives == 0 or positives == len(frame):
        raise SnapshotError(
            f"target {ds.target.column!r} has a single class in the window "
            f"(positive class {ds.target.positive_class!r} in {positives} of {len(frame)} rows)"
        )

    buffer = io.BytesIO()
    table = pa.Table.from_pandas(frame, preserve_index=False)
    pq.write_table(table, buffer, compression="zstd")
    data = buffer.getvalue()
    sha256 = hashlib.sha256(data).hexdigest()
    snapshot_id = sha256[:16]
    key = layout.snapshot_partition(ds.name, snapshot_id)
    meta = {
        "dataset": ds.name,
        "as_of": as_of.isoformat(),
        "snapshot_id": snapshot_id,
        "sha256": sha256,
        "window": [days[0].isoformat(), days[-1].isoformat()],
        "holdout_from": holdout_from,
        "days_used": sorted(set(frame[DAY_COLUMN])),
        "days_excluded": excluded,
        "rows": int(len(frame)),
        "train_rows": int(counts["train"]),
        "holdout_rows": int(counts["holdout"]),
        "positive_rate": round(positives / len(frame), 6),
        "schema": schema.to_dict(),
        "contract": _contract_summary(config, storage),
    }
    if not storage.partition_exists(key):  # content-addressed: same id, same bytes
        with storage.staging() as staged:
            (staged / "snapshot.parquet").write_bytes(data)
            storage.publish_partition(key, staged, meta)
    meta["uri"] = storage.uri(key)
    meta["dvc"] = track_with_dvc(config, data, meta, s3_options)
    if meta["dvc"].get("dvc_file_content"):  # beside the snapshot: restorable without the model manifest
        storage.write_bytes(f"{key}.dvc", meta["dvc"]["dvc_file_content"].encode())
    log.info(
        "snapshot %s: %d rows (%d train, %d holdout), %d day(s) excluded",
        snapshot_id,
        len(frame),
        counts["train"],
        counts["holdout"],
        len(excluded),
    )
    return {
        k: meta[k]
        for k in (
            "snapshot_id",
            "uri",
            "sha256",
            "rows",
            "train_rows",
            "holdout_rows",
            "window",
            "days_excluded",
            "dvc",
        )
    }


def read_snapshot(storage: Storage, dataset: str, snapshot_id: str) -> tuple[pd.DataFrame, dict]:
    key = layout.snapshot_partition(dataset, snapshot_id)
    return storage.read_partition(key).to_pandas(), storage.read_manifest(key)


def _dvc_remote(config: PipelineConfig, s3_options: dict | None) -> tuple[str, dict]:
    """The DVC remote's URL (without secrets, for the record) and its full config.

    `dvc.remote_url` (or PIPELINE_DVC_REMOTE_URL) wins; otherwise the project's default remote
    from .dvc/config (+ config.local). An s3:// remote gets the storage's endpoint and
    credentials (the Airflow connection, else boto3's env chain), in memory only."""
    from dvc.config import Config

    url = config.dvc.remote_url
    settings: dict = {}
    if not url:
        project = Config(dvc_dir=str(Path(config.dvc.repo_dir) / ".dvc"))
        name = project["core"].get("remote")
        if not name or name not in project["remote"]:
            raise SnapshotError(
                f"no DVC remote: set dvc.remote_url (or {'PIPELINE_DVC_REMOTE_URL'}) or a default "
                f"remote in {config.dvc.repo_dir}/.dvc/config"
            )
        settings = dict(project["remote"][name])
        url = settings.pop("url")
    if url.startswith("s3://"):
        opts = {k: v for k, v in (s3_options or {}).items() if v}
        endpoint = opts.get("endpoint_url") or os.environ.get("AWS_ENDPOINT_URL")
        settings.update(
            {
                k: v
                for k, v in {
                    "endpointurl": endpoint,
                    "access_key_id": opts.get("access_key_id"),
                    "secret_access_key": opts.get("secret_access_key"),
                    "session_token": opts.get("session_token"),
                    "region": opts.get("region"),
                }.items()
                if v
            }
        )
    return url, {"url": url, **settings}


def _write_workspace(target: Path, data: bytes, meta: dict) -> None:
    target.mkdir(parents=True, exist_ok=True)
    summary = (
        json.dumps({k: meta[k] for k in ("snapshot_id", "sha256", "as_of", "window", "rows")}, indent=2, sort_keys=True)
        + "\n"
    )
    for name, payload in (("training.parquet", data), ("snapshot.json", summary.encode())):
        tmp = target / f".{name}.tmp"  # dot-files are excluded by .dvcignore
        tmp.write_bytes(payload)
        os.replace(tmp, target / name)


def track_with_dvc(config: PipelineConfig, data: bytes, meta: dict, s3_options: dict | None = None) -> dict:
    """Version the snapshot with DVC without touching the project checkout.

    Each run builds the same layout as the project's tracked ``data/`` directory
    (``data/<dataset>/training.parquet`` + ``snapshot.json``) in a DVC workspace of its own
    (a temporary ``--no-scm`` repo), ``dvc add``s it there and pushes it to the remote. The
    resulting ``.dvc`` file is returned (the model manifest records it, and it is stored beside
    the snapshot), so two training runs never share a DVC lock, workers never leave the git
    checkout dirty, and ``python -m pipeline dvc-restore <version>`` (write that .dvc file,
    ``dvc pull``) brings any model's training data back in any clone.

    Under ``dvc repro`` (DVC_STAGE set) the snapshot is written into the project workspace
    instead; ``make repro`` then ``dvc add``s it into the committed ``data.dvc``.
    """
    if not config.dvc.enabled:
        return {"enabled": False}
    if os.environ.get("DVC_STAGE"):
        target = Path(config.dvc.repo_dir) / config.dvc.snapshot_dir / config.dataset.name
        _write_workspace(target, data, meta)
        return {
            "enabled": True,
            "path": str(target),
            "note": "written under `dvc repro`; `make repro` records it in data.dvc (dvc add + push)",
        }
    import shutil
    import tempfile

    from dvc.repo import Repo

    url, remote = _dvc_remote(config, s3_options)
    work = Path(tempfile.mkdtemp(prefix="pipeline-dvc-"))
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # "Initialized DVC repository." + hints
            Repo.init(str(work), no_scm=True).close()
        _write_workspace(work / config.dvc.snapshot_dir / config.dataset.name, data, meta)
        overrides = {"core": {"remote": "snapshots", "analytics": False}, "remote": {"snapshots": remote}}
        with Repo(str(work), config=overrides) as repo:
            repo.add(str(work / config.dvc.snapshot_dir))
            dvc_text = (work / f"{config.dvc.snapshot_dir}.dvc").read_text()
            result = {
                "enabled": True,
                "md5": yaml.safe_load(dvc_text)["outs"][0]["md5"],
                "remote": url,
                "dvc_file": f"{config.dvc.snapshot_dir}.dvc",
                "dvc_file_content": dvc_text,
            }
            if config.dvc.push:
                try:
                    repo.push()
                    result["pushed"] = True
                except Exception as exc:  # a missing remote must not lose the training run
                    log.warning("dvc push to %s failed: %s", url, exc)
                    result["pushed"] = False
                    result["push_error"] = str(exc)[:500]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return result


def restore_snapshot(
    config: PipelineConfig, storage: Storage, model_manifest: dict, pull: bool = True, s3_options: dict | None = None
) -> dict:
    """Write the .dvc file a model's snapshot was recorded with into the project and `dvc pull` it;
    the pulled training.parquet is checked against the snapshot's sha256."""
    snap = model_manifest.get("data") or {}
    dvc = snap.get("dvc") or {}
    if not dvc.get("dvc_file_content"):
        raise SnapshotError(
            f"model {model_manifest.get('version')} has no recorded DVC file (trained with DVC "
            "disabled, or under `dvc repro`: use the committed data.dvc)"
        )
    repo_dir = Path(config.dvc.repo_dir)
    dvc_file = repo_dir / dvc["dvc_file"]
    dvc_file.write_text(dvc["dvc_file_content"])
    result = {"version": model_manifest.get("version"), "dvc_file": str(dvc_file), "md5": dvc["md5"], "pulled": False}
    if not pull:
        return result
    from dvc.repo import Repo

    _, remote = _dvc_remote(config, s3_options)
    with Repo(str(repo_dir), config={"core": {"remote": "snapshots"}, "remote": {"snapshots": remote}}) as repo:
        repo.pull(targets=[str(dvc_file)], force=True)
        status = repo.status(targets=[str(dvc_file)])
    path = repo_dir / config.dvc.snapshot_dir / config.dataset.name / "training.parquet"
    sha256 = hashlib.sha256(path.read_bytes()).hexdigest()
    if sha256 != snap.get("snapshot_sha256"):
        raise SnapshotError(f"{path}: sha256 {sha256} is not the snapshot's {snap.get('snapshot_sha256')}")
    return {**result, "pulled": True, "path": str(path), "sha256": sha256, "dvc_status_clean": not status}
