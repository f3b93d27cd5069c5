"""A single source file holding every day (the demo's shape): read once, streamed and split into one
Parquet file per day under ``cache/source/<dataset>/<fingerprint>/``, so each day's ingest reads only
its own rows. The split also records which columns parse as numbers and which target values occur,
for the data contract."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import logging
import os

import numpy as np
import pandas as pd
import pyarrow as pa

from pipeline.core import layout
from pipeline.core.errors import NoDelivery, PartitionNotFound, SourceError
from pipeline.core.settings import PipelineConfig
from pipeline.core.storage import Storage
from pipeline.data.privacy import pseudonymise
from pipeline.data.reading import LINE_COLUMN, Delivery, check_rows, decompress, normalise, read_file, utf8_text
from pipeline.data.source import missing_tokens, to_float

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------- one file for all days


def source_fingerprint(config: PipelineConfig, storage: Storage) -> str:
    src = config.dataset.source
    version = storage.external_version(src.uri)
    if version is None:
        raise NoDelivery(f"source file not found: {src.uri}")
    blob = "|".join(
        [
            src.uri,
            version,
            src.format,
            src.csv_delimiter,
            *missing_tokens(src),
            str(config.dataset.id_column),
            str(config.dataset.event_time_column),
            config.dataset.target.column,
            config.dataset.batching.start_date.isoformat(),
            str(config.dataset.batching.days),
            "pii:" + ",".join(config.dataset.pii_columns),
        ]
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _days_of(config: PipelineConfig, text: pd.DataFrame) -> np.ndarray:
    from pipeline.data.source import assign_days

    days = assign_days(config.dataset, text, strict=False).to_numpy(dtype=object)
    return np.array([d.isoformat() if isinstance(d, dt.date) else "unassigned" for d in days], dtype=object)


def _stream_blocks(config: PipelineConfig, storage: Storage):
    """The source as normalised text frames of about 50k rows, with source line numbers."""
    src = config.dataset.source
    uri = src.uri
    if src.format == "parquet":
        import pyarrow.parquet as pq

        data = read_file(uri, storage)
        try:
            pf = pq.ParquetFile(io.BytesIO(data))
            start = 0
            for batch in pf.iter_batches(batch_size=50_000):
                frame = pd.DataFrame(
                    {n: batch.column(n).cast(pa.string()).to_pandas().astype(object) for n in batch.schema.names}
                )
                frame.index = pd.RangeIndex(start, start + len(frame))
                start += len(frame)
                yield normalise(frame.where(frame.notna(), None), missing_tokens(src))
        except SourceError:
            raise
        except Exception as exc:
            raise SourceError(f"{uri}: not a readable Parquet file ({exc})") from exc
        return
    import pyarrow.csv as pcsv

    try:
        stream = storage.open_external(uri)
    except FileNotFoundError as exc:
        raise NoDelivery(f"source file not found: {uri}") from exc
    try:
        reader = pcsv.open_csv(
            stream,
            read_options=pcsv.ReadOptions(block_size=8 << 20),
            parse_options=pcsv.ParseOptions(delimiter=src.csv_delimiter),
            convert_options=pcsv.ConvertOptions(
                strings_can_be_null=False, quoted_strings_can_be_null=False, column_types=_all_text(uri, src)
            ),
        )
        line = 2
        for batch in reader:
            frame = batch.to_pandas(types_mapper=lambda t: None).astype(object)
            frame.index = pd.RangeIndex(line, line + len(frame))
            line += len(frame)
            yield normalise(frame, missing_tokens(src))
    except (pa.ArrowInvalid, OSError, EOFError) as exc:
        raise _explain_stream_error(uri, src, storage, exc) from exc


def read_local_header(uri: str, fmt: str, delimiter: str) -> list[str] | None:
    """The column names of a local single-file source, or None if it cannot be read cheaply."""
    if "://" in uri or "{date" in uri or any(ch in uri for ch in "*?[") or not os.path.isfile(uri):
        return None
    try:
        if fmt == "parquet":
            import pyarrow.parquet as pq

            return list(pq.read_schema(uri).names)
        import csv
        import gzip

        opener = gzip.open if uri.endswith(".gz") else open
        with opener(uri, "rt", encoding="utf-8", newline="") as fh:
            return [c.strip() for c in next(csv.reader(fh, delimiter=delimiter))]
    except Exception:  # an unreadable source is reported, with its row, when a day is read
        return None


def _all_text(uri: str, src) -> dict:
    header = read_local_header(uri, "csv", src.csv_delimiter) if not uri.startswith("s3://") else None
    return {c: pa.string() for c in header} if header else {}


def _explain_stream_error(uri: str, src, storage: Storage, exc: Exception) -> SourceError:
    """Name the line for encoding errors (pyarrow does not) by decoding line by line."""
    data = decompress(read_file(uri, storage), uri)  # raises the gzip errors with their names
    if "UTF8" in str(exc) or "utf-8" in str(exc).lower():
        utf8_text(data, uri)
    return SourceError(f"{uri}: unreadable CSV: {exc}")


def build_source_index(config: PipelineConfig, storage: Storage) -> dict:
    """Split a single-file source into one text Parquet file per day (streamed; read once)."""
    import pyarrow.parquet as pq

    ds = config.dataset
    fingerprint = source_fingerprint(config, storage)
    key = layout.source_index(ds.name, fingerprint)
    writers: dict[str, pq.ParquetWriter] = {}
    rows: dict[str, int] = {}
    numeric_ok: dict[str, bool] = {}
    target_values: set[str] = set()
    id_integer = ds.id_column is not None
    header: list[str] = []
    total = 0
    log.info("splitting %s by day (read once per source version)", ds.source.uri)
    with storage.staging() as staged:
        try:
            for block in _stream_blocks(config, storage):
                header = header or list(block.columns)
                for col in block.columns:
                    if numeric_ok.get(col, True):
                        present = block[col].dropna()
                        numeric_ok[col] = bool(to_float(present).notna().all())
                if id_integer and ds.id_column in block.columns:
                    id_integer = whole_numbers(block[ds.id_column])
                if ds.target.column in block.columns and len(target_values) < 100:
                    target_values |= set(block[ds.target.column].dropna().unique().tolist())
                days = _days_of(config, block)
                block = pseudonymise(block, ds.pii_columns)  # the split is stored: no PII in clear
                block = block.assign(**{LINE_COLUMN: block.index.to_numpy(dtype="int64")})
                table = pa.Table.from_pandas(
                    block,
                    preserve_index=False,
                    schema=pa.schema([(c, pa.string()) for c in header] + [(LINE_COLUMN, pa.int64())]),
                )
                order = np.argsort(days, kind="stable")
                sorted_days = days[order]
                table = table.take(pa.array(order))
                bounds = np.flatnonzero(sorted_days[1:] != sorted_days[:-1]) + 1
                for lo, hi in zip(np.r_[0, bounds], np.r_[bounds, len(sorted_days)], strict=True):
                    day = sorted_days[lo]
                    if day not in writers:
                        writers[day] = pq.ParquetWriter(staged / f"dt={day}.parquet", table.schema, compression="zstd")
                    writers[day].write_table(table.slice(lo, hi - lo))
                    rows[day] = rows.get(day, 0) + int(hi - lo)
                total += len(block)
                if total % 500_000 < len(block):
                    log.info("  %d rows split", total)
        finally:
            for w in writers.values():
                w.close()
        if not total:
            raise SourceError(f"{ds.source.uri}: header only, no data rows")
        manifest = storage.publish_partition(
            key,
            staged,
            {
                "source": ds.source.uri,
                "fingerprint": fingerprint,
                "rows": total,
                "header": header,
                "days": dict(sorted(rows.items())),
                "numeric_columns": [c for c in header if numeric_ok.get(c) and c != LINE_COLUMN],
                "target_values": sorted(str(v) for v in target_values),
                "id_is_integer": bool(id_integer),
            },
        )
    log.info("split %d rows into %d days", total, len(rows))
    return manifest


def whole_numbers(values: pd.Series) -> bool:
    present = values.dropna().astype(str)
    return bool(len(present)) and bool(present.str.fullmatch(r"[+-]?\d{1,18}").all())


def source_index(config: PipelineConfig, storage: Storage) -> tuple[str, dict]:
    key = layout.source_index(config.dataset.name, source_fingerprint(config, storage))
    try:
        return key, storage.read_manifest(key)
    except PartitionNotFound:
        build_source_index(config, storage)
        return key, storage.read_manifest(key)


def read_day_from_index(config: PipelineConfig, storage: Storage, day: dt.date) -> Delivery:
    import pyarrow.parquet as pq

    key, manifest = source_index(config, storage)
    name = f"dt={day.isoformat()}.parquet"
    if day.isoformat() not in manifest["days"]:
        raise NoDelivery(f"source {config.dataset.source.uri} has no rows for {day} (dataset {config.dataset.name})")
    rows = int(manifest["days"][day.isoformat()])
    check_rows(rows, f"{config.dataset.source.uri} ({day})", config.dataset.source.max_rows)
    data = storage.read_partition_file(key, name)
    table = pq.read_table(io.BytesIO(data))
    frame = table.to_pandas(types_mapper=lambda t: None)
    lines = frame.pop(LINE_COLUMN).to_numpy()
    frame = frame.astype(object)
    frame = frame.where(frame.notna(), None)
    frame.index = pd.Index(lines)
    return Delivery(
        day=day,
        text=frame,
        files=[config.dataset.source.uri],
        digest=hashlib.sha256(data).hexdigest(),
        row_label="line" if config.dataset.source.format == "csv" else "row",
    )
