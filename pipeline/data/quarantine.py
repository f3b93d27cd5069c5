"""Quarantine: every failed delivery (or the bad rows of one) is kept with its verdict.

``quarantine/<dataset>/dt=YYYY-MM-DD/<delivery id>/`` holds what was delivered (the
delivered files under ``files/`` when the source has one file per day, or the day's
rows as text), ``verdict.json`` (stage, reasons, counts) and, after a failed audit,
``validation_result.json``. Delivery ids start with the UTC time, so nothing is ever
overwritten and listing is chronological.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from typing import Any

import pandas as pd
import pyarrow as pa

from pipeline.core import layout
from pipeline.core.errors import PartitionNotFound
from pipeline.core.storage import Storage


def _json(value: Any) -> bytes:
    return json.dumps(value, indent=2, sort_keys=True, default=str).encode()


def _audit(storage: Storage, key: str, verdict: dict) -> None:
    from pipeline.ops import audit

    audit.record(
        storage,
        "quarantine",
        f"{verdict['dataset']} {verdict['day']}: delivery {verdict['delivery_id']} "
        f"quarantined at {verdict['stage']}" + (" (bad rows only)" if verdict.get("partial") else ""),
        why="; ".join(verdict["reasons"])[:2000],
        where=storage.uri(key),
        dataset=verdict["dataset"],
        day=verdict["day"],
        delivery_id=verdict["delivery_id"],
        stage=verdict["stage"],
    )


def _verdict(dataset: str, day: dt.date, delivery_id: str, stage: str, reasons: list[str], **extra) -> dict:
    return {
        "dataset": dataset,
        "day": day.isoformat(),
        "delivery_id": delivery_id,
        "stage": stage,
        "reasons": reasons,
        "quarantined_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        **extra,
    }


def _text_table(frame: pd.DataFrame, row_label: str) -> pa.Table:
    out = frame.astype(object).where(frame.notna(), None).astype("string[python]")
    out.insert(0, f"_{row_label}", [str(i) for i in frame.index])
    return pa.Table.from_pandas(out, preserve_index=False)


def keep_delivery(
    storage: Storage, delivery, dataset: str, stage: str, reasons: list[str], rows: pd.DataFrame | None = None, **extra
) -> str:
    """Quarantine a delivery that failed before staging; returns the quarantine URI."""
    key = layout.quarantine_delivery(dataset, delivery.day, delivery.delivery_id)
    files: dict[str, bytes] = {}
    for uri, data in (delivery.raw or {}).items():
        files[f"files/{os.path.basename(uri)}"] = data
    frames = {}
    text = rows if rows is not None else (delivery.text if not files else None)
    if text is not None and len(text):
        frames["rows.parquet"] = _text_table(text, delivery.row_label)
    verdict = _verdict(
        dataset,
        delivery.day,
        delivery.delivery_id,
        stage,
        reasons,
        source_files=delivery.files,
        source_sha256=delivery.digest,
        **extra,
    )
    storage.write_partition(
        key, frames, manifest={"reason": verdict}, extra_files={"verdict.json": _json(verdict), **files}
    )
    _audit(storage, key, verdict)
    return storage.uri(key)


def keep_unread(
    storage: Storage,
    dataset: str,
    day: dt.date,
    delivery_id: str,
    files: dict[str, bytes],
    reasons: list[str],
    source_files: list[str],
) -> str:
    """Quarantine delivered files that could not even be read (corrupt, not UTF-8, ...)."""
    key = layout.quarantine_delivery(dataset, day, delivery_id)
    verdict = _verdict(dataset, day, delivery_id, "read", reasons, source_files=source_files)
    storage.write_partition(
        key,
        {},
        manifest={"reason": verdict},
        extra_files={"verdict.json": _json(verdict), **{f"files/{os.path.basename(u)}": d for u, d in files.items()}},
    )
    _audit(storage, key, verdict)
    return storage.uri(key)


def from_staging(
    storage: Storage,
    staged_key: str,
    dataset: str,
    day: dt.date,
    delivery_id: str,
    stage: str,
    reasons: list[str],
    details: dict,
) -> str:
    """Move a staged delivery that failed its audit to quarantine (with the validation result)."""
    key = layout.quarantine_delivery(dataset, day, delivery_id)
    staged = storage.read_manifest(staged_key)
    verdict = _verdict(
        dataset, day, delivery_id, stage, reasons, source_files=staged.get("source_files"), rows=staged.get("row_count")
    )
    storage.copy_partition(
        staged_key,
        key,
        manifest={"reason": verdict},
        extra_files={"verdict.json": _json(verdict), "validation_result.json": _json(details)},
    )
    _audit(storage, key, verdict)
    return storage.uri(key)


def list_quarantined(storage: Storage, dataset: str | None = None, since: dt.date | None = None) -> list[dict]:
    """Every quarantined delivery with its verdict, oldest first."""
    out = []
    datasets = [dataset] if dataset else storage.list_children(layout.quarantine_root())
    for ds in datasets:
        for day_dir in storage.list_children(layout.quarantine_root(ds)):
            day = layout.day_of(day_dir)
            if day is None or (since and day < since):
                continue
            for delivery_id in storage.list_children(layout.quarantine_day(ds, day)):
                key = layout.quarantine_delivery(ds, day, delivery_id)
                try:
                    manifest = storage.read_manifest(key)
                except PartitionNotFound:
                    continue
                reason = manifest.get("reason", {})
                out.append(
                    {
                        "dataset": ds,
                        "day": day.isoformat(),
                        "delivery_id": delivery_id,
                        "stage": reason.get("stage"),
                        "reasons": reason.get("reasons", []),
                        "quarantined_at": reason.get("quarantined_at"),
                        "uri": storage.uri(key),
                    }
                )
    return sorted(out, key=lambda r: (r["quarantined_at"] or "", r["dataset"], r["day"]))
