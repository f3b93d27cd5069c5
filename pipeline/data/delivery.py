"""Reading one day's delivery as text, without reading the rest of the source.

Two source shapes (``dataset.source.uri``):

* **one file per day** (the usual production shape): a template with ``{date}``
  (``s3://landing/credit/dt={date}/*.csv``); glob characters select several files.
* **one file for every day** (the demo): rows are assigned to days by event time or
  by a stable hash of the id. The file is read once, streamed and split into one
  Arrow file per day under ``cache/source/<dataset>/<fingerprint>/``; each day's
  ingest then reads only its own rows. The split also records which columns parse
  as numbers and which target values occur, for the data contract.

Cells stay text here (``None`` where missing); typing is the contract's job. Row
labels are source line numbers for CSV (the header is line 1) and row numbers for
Parquet, so messages point at what a person can open.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import os

import numpy as np
import pandas as pd

from pipeline.core.errors import DeliveryTooLarge, NoDelivery, OutsideLandingArea, SourceError
from pipeline.core.settings import PipelineConfig
from pipeline.core.storage import Storage
from pipeline.data.privacy import pseudonymise
from pipeline.data.reading import Delivery, parse_csv, parse_parquet, read_file
from pipeline.data.source import is_per_day, landing_root, missing_tokens, to_float
from pipeline.data.source_index import read_day_from_index, source_index, whole_numbers

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------- per-day files


def day_pattern(config: PipelineConfig, day: dt.date) -> str:
    return config.dataset.source.uri.format(date=day)


def confined(uri: str, root: str) -> None:
    """Refuse a file that resolves outside the landing area (a '..' in a key, a symlink out)."""
    if uri.startswith("s3://"):
        if ".." in uri[5:].split("/") or not (uri + "/").startswith(root.rstrip("/") + "/"):
            raise OutsideLandingArea(f"{uri} is outside the landing area {root}; refusing to read it")
        return
    real, real_root = os.path.realpath(uri), os.path.realpath(root)
    if os.path.commonpath([real, real_root]) != real_root:
        raise OutsideLandingArea(
            f"{uri} resolves to {real}, outside the landing area {real_root} (dataset.source.root); refusing to read it"
        )


def day_files(config: PipelineConfig, storage: Storage, day: dt.date) -> list[str]:
    """The day's delivered files, each checked to lie inside the landing area."""
    files = storage.list_external(day_pattern(config, day))
    for uri in files:
        confined(uri, landing_root(config.dataset.source))
    return files


def evidence(config: PipelineConfig, storage: Storage, day: dt.date) -> tuple[dict[str, bytes], list[str]]:
    """What of an unreadable delivery can be kept in quarantine: the files inside the landing area
    and within the size limit; the others are only named (with why) in the second list."""
    kept, named = {}, []
    for uri in storage.list_external(day_pattern(config, day)):
        try:
            confined(uri, landing_root(config.dataset.source))
        except OutsideLandingArea:
            named.append(f"{uri}: outside the landing area, not kept")
            continue
        size = storage.external_size(uri)
        if size is None or size > config.dataset.source.max_bytes:
            named.append(f"{uri}: {size} bytes, over dataset.source.max_bytes, not kept")
            continue
        kept[uri] = storage.read_external(uri)
    return kept, named


def read_day_files(config: PipelineConfig, storage: Storage, day: dt.date) -> Delivery:
    src = config.dataset.source
    pattern = day_pattern(config, day)
    files = day_files(config, storage, day)
    if not files:
        raise NoDelivery(f"no delivery for {day}: nothing matches {pattern}")
    raw, frames = {}, []
    digest = hashlib.sha256()
    budget, rows = src.max_bytes, src.max_rows
    for uri in files:
        size = storage.external_size(uri)
        if size is not None and size > budget:  # refused before reading a byte of it
            raise DeliveryTooLarge(
                f"{uri}: {size} bytes, over the limit of {src.max_bytes} bytes per delivery (dataset.source.max_bytes)"
            )
        data = read_file(uri, storage)
        raw[uri] = data
        digest.update(data)
        frame = (
            parse_csv(data, uri, src.csv_delimiter, missing_tokens(src), max_bytes=budget, max_rows=rows)
            if src.format == "csv"
            else parse_parquet(data, uri, missing_tokens(src), budget, rows)
        )
        budget -= frame.attrs.pop("delivered_bytes", len(data))
        rows -= len(frame)
        frames.append((uri, frame))
    if len(frames) == 1:
        text = frames[0][1]
    else:
        columns = list(frames[0][1].columns)
        for uri, frame in frames[1:]:
            if list(frame.columns) != columns:
                raise SourceError(f"{uri}: columns {list(frame.columns)} differ from {files[0]}'s {columns}")
        text = pd.concat([f.set_axis([f"{os.path.basename(u)}:{i}" for i in f.index]) for u, f in frames])
    text = pseudonymise(text, config.dataset.pii_columns)  # declared PII never goes further in clear
    return Delivery(
        day=day,
        text_frame=text,
        files=files,
        digest=digest.hexdigest(),
        raw=raw,
        row_label="line" if src.format == "csv" else "row",
    )


def read_delivery(config: PipelineConfig, storage: Storage, day: dt.date) -> Delivery:
    """The day's delivery as text."""
    if is_per_day(config.dataset.source):
        return read_day_files(config, storage, day)
    return read_day_from_index(config, storage, day)


def resolution_sample(config: PipelineConfig, storage: Storage, delivery: Delivery) -> dict:
    """What the contract is resolved from: header, columns that parse as numbers, target values."""
    if is_per_day(config.dataset.source):
        text = delivery.text
        numeric = [c for c in text.columns if len(text[c].dropna()) and to_float(text[c].dropna()).notna().all()]
        target = config.dataset.target.column
        values = sorted(text[target].dropna().unique().tolist()) if target in text.columns else []
        id_col = config.dataset.id_column
        return {
            "header": list(text.columns),
            "numeric_columns": numeric,
            "target_values": values,
            "rows_per_day": len(text),
            "from": delivery.files,
            "id_is_integer": bool(id_col in text.columns and whole_numbers(text[id_col])) if id_col else False,
        }
    _, manifest = source_index(config, storage)
    return {
        "header": manifest["header"],
        "numeric_columns": manifest["numeric_columns"],
        "target_values": manifest["target_values"],
        "rows_per_day": float(np.median(list(manifest["days"].values()))),
        "from": [manifest["source"]],
        "id_is_integer": bool(manifest.get("id_is_integer")),
    }
