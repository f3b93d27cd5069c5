"""A single source file holding every day (the demo's shape): read once, streamed and split into one
Arrow file per day under ``cache/source/<dataset>/<fingerprint>/``, so each day's ingest reads only
its own rows, already parsed. The split also records which columns parse as numbers and which
target values occur, for the data contract. Everything here is column-wise Arrow: no Python object
per cell (the 3M-row benchmark source splits in about the time the CSV reader takes to read it)."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import logging
import os
from collections.abc import Iterator

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc

from pipeline.core import layout
from pipeline.core.errors import ArtefactError, NoDelivery, PartitionNotFound, SourceError
from pipeline.core.settings import PipelineConfig
from pipeline.core.storage import Storage
from pipeline.data.privacy import pseudonymise
from pipeline.data.reading import LINE_COLUMN, Delivery, check_rows, decompress, normalise_array, read_file, utf8_text
from pipeline.data.source import day_offsets, missing_tokens, to_float
from pipeline.ops.threads import prefetched, threads_per_task

log = logging.getLogger(__name__)

# The split's file format (part of the fingerprint: a new format never reads an old split).
# Uncompressed Arrow IPC: zstd halved its size but tripled the split's time (it compressed at a
# third of the CSV reader's speed); a day's file is read back as-is, with no parsing.
SPLIT_FORMAT = "arrow-ipc-v2"
_IPC_OPTIONS = pa.ipc.IpcWriteOptions(compression=None)
# Source blocks parsed at a time: big enough that each day's slice of a block is thousands of rows.
BLOCK_BYTES = 32 << 20
MAX_HEADER_BYTES = 1 << 20

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
            SPLIT_FORMAT,
            "pii:" + ",".join(config.dataset.pii_columns),
        ]
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _stream_blocks(config: PipelineConfig, storage: Storage) -> Iterator[tuple[pa.RecordBatch, int]]:
    """The source as Arrow text blocks of several MB, as read (`normalised` strips them), each with
    the line (CSV; header = line 1) or row number (Parquet) of its first row."""
    src = config.dataset.source
    uri = src.uri

    if src.format == "parquet":
        import pyarrow.parquet as pq

        data = read_file(uri, storage)
        try:
            pf = pq.ParquetFile(io.BytesIO(data))
            start = 0
            for batch in pf.iter_batches(batch_size=200_000):
                text = pa.RecordBatch.from_arrays(
                    [c.cast(pa.string()) for c in batch.columns], names=batch.schema.names
                )
                yield text, start
                start += batch.num_rows
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
            read_options=pcsv.ReadOptions(block_size=BLOCK_BYTES),
            parse_options=pcsv.ParseOptions(delimiter=src.csv_delimiter),
            convert_options=pcsv.ConvertOptions(
                strings_can_be_null=False, quoted_strings_can_be_null=False, column_types=_all_text(uri, src, storage)
            ),
        )
        line = 2
        for batch in reader:
            yield batch, line
            line += batch.num_rows
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


def _all_text(uri: str, src, storage: Storage) -> dict:
    """Every column as text: the reader must never infer a type ('007' would become 7)."""
    header = read_local_header(uri, "csv", src.csv_delimiter)
    if header is None:
        header = _stream_header(storage, uri, src.csv_delimiter)
    return {c: pa.string() for c in header}


def _stream_header(storage: Storage, uri: str, delimiter: str) -> list[str]:
    """The header of a CSV that is not a local file, from the start of its stream."""
    import csv

    stream = storage.open_external(uri)
    head = b""
    try:
        while b"\n" not in head and len(head) < MAX_HEADER_BYTES:
            chunk = stream.read(1 << 16)
            if not chunk:
                break
            head += chunk
    finally:
        stream.close()
    first = head.split(b"\n", 1)[0].decode("utf-8", errors="replace")
    return [c.strip() for c in next(csv.reader([first], delimiter=delimiter), [])]


def _explain_stream_error(uri: str, src, storage: Storage, exc: Exception) -> SourceError:
    """Name the line for encoding errors (pyarrow does not) by decoding line by line."""
    data = decompress(read_file(uri, storage), uri)  # raises the gzip errors with their names
    if "UTF8" in str(exc) or "utf-8" in str(exc).lower():
        utf8_text(data, uri)
    return SourceError(f"{uri}: unreadable CSV: {exc}")


def _normalised(block: pa.RecordBatch, tokens: tuple[str, ...]) -> tuple[pa.RecordBatch, dict[str, bool]]:
    """The block with cells stripped and missing spellings null, and the columns found to hold
    only numbers on the way: a column that Arrow casts whole to numbers without a NaN or a missing
    spelling has nothing to strip (Arrow refuses surrounding whitespace), so it is kept as read."""
    names = [str(n).strip() for n in block.schema.names]
    # Only a missing spelling that is itself a number ('-999') can hide in a column Arrow casts.
    numeric_tokens = pa.array([t for t in tokens if _casts(t)], type=pa.string())
    columns, numeric = [], {}
    for name, column in zip(names, block.columns, strict=True):
        raw = column if pa.types.is_string(column.type) else column.cast(pa.string())
        try:
            parsed = pc.cast(raw, pa.float64())
            hides_token = len(numeric_tokens) and pc.any(pc.is_in(raw, value_set=numeric_tokens)).as_py()
            if not pc.any(pc.is_nan(parsed)).as_py() and not hides_token:
                columns.append(raw)
                numeric[name] = True
                continue
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            pass
        columns.append(normalise_array(raw, tokens))
    return pa.RecordBatch.from_arrays(columns, names=names), numeric


def _casts(token: str) -> bool:
    try:
        pc.cast(pa.array([token]), pa.float64())
        return True
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return False


def _all_numbers(values: pa.Array) -> bool:
    """Whether every present value parses as a number (`to_float`'s rule; vacuously true)."""
    present = values.drop_null()
    try:
        parsed = pc.cast(present, pa.float64())
        if not pc.any(pc.is_nan(parsed)).as_py():  # text 'nan' is pandas' call, below
            return True
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    return bool(to_float(pd.Series(present.to_numpy(zero_copy_only=False), dtype=object)).notna().all())


def _whole_numbers(values: pa.Array) -> bool:
    present = values.drop_null()
    if len(present) and pc.all(pc.match_substring_regex(present, r"^[+-]?[0-9]{1,18}$")).as_py():
        return True
    # Python's \d also takes other scripts' digits: its rule decides what ASCII does not settle.
    return whole_numbers(pd.Series(present.to_numpy(zero_copy_only=False), dtype=object))


def _day_codes(config: PipelineConfig, block: pa.RecordBatch, first: int) -> tuple[np.ndarray, list[str]]:
    """Each row's day as a code into the returned day names. Rows keyed by a present id are placed
    by its hash straight from Arrow; event times and rows without an id go through `assign_days`."""
    ds = config.dataset
    if ds.id_column and not ds.event_time_column and block.column(ds.id_column).null_count == 0:
        codes = day_offsets(ds, block.column(ds.id_column).to_numpy(zero_copy_only=False))
        start = ds.batching.start_date
        return codes, [(start + dt.timedelta(days=i)).isoformat() for i in range(ds.batching.days)]
    from pipeline.data.source import assign_days

    frame = pd.DataFrame(
        {n: c.to_numpy(zero_copy_only=False) for n, c in zip(block.schema.names, block.columns, strict=True)},
        index=pd.RangeIndex(first, first + block.num_rows),
    )
    days = assign_days(ds, frame, strict=False).to_numpy(dtype=object)
    names = np.array([d.isoformat() if isinstance(d, dt.date) else "unassigned" for d in days], dtype=object)
    unique, codes = np.unique(names, return_inverse=True)
    return codes, [str(u) for u in unique]


def _pseudonymised(block: pa.RecordBatch, columns: tuple[str, ...] | list[str]) -> pa.RecordBatch:
    """The split is stored: declared PII is replaced by its keyed hash first."""
    present = [c for c in columns if c in block.schema.names]
    if not present:
        return block
    frame = pd.DataFrame({c: block.column(c).to_numpy(zero_copy_only=False) for c in present})
    hashed = pseudonymise(frame, present)
    arrays = [
        pa.array(hashed[n].to_numpy(), type=pa.string()) if n in present else c
        for n, c in zip(block.schema.names, block.columns, strict=True)
    ]
    return pa.RecordBatch.from_arrays(arrays, names=block.schema.names)


def build_source_index(config: PipelineConfig, storage: Storage) -> dict:
    """Split a single-file source into one Arrow file per day, in one streaming pass: cells are
    normalised, typed checks and the day assignment run column-wise in Arrow (no Python object per
    cell), and each block is sorted by day once and appended to the days' files."""
    ds = config.dataset
    fingerprint = source_fingerprint(config, storage)
    key = layout.source_index(ds.name, fingerprint)
    writers: dict[str, pa.ipc.RecordBatchFileWriter] = {}
    rows: dict[str, int] = {}
    numeric_ok: dict[str, bool] = {}
    target_values: set[str] = set()
    id_integer = ds.id_column is not None
    header: list[str] = []
    schema = None
    total = 0
    log.info("splitting %s by day (read once per source version)", ds.source.uri)
    with storage.staging() as staged:
        try:
            blocks = _stream_blocks(config, storage)
            for raw, first in prefetched(blocks) if threads_per_task(config) > 1 else blocks:
                block, numeric = _normalised(raw, missing_tokens(ds.source))
                if not header:
                    header = list(block.schema.names)
                    schema = pa.schema([(c, pa.string()) for c in header] + [(LINE_COLUMN, pa.int64())])
                for name, column in zip(block.schema.names, block.columns, strict=True):
                    if numeric_ok.get(name, True):
                        numeric_ok[name] = numeric.get(name) or _all_numbers(column)
                if id_integer and ds.id_column in block.schema.names:
                    id_integer = _whole_numbers(block.column(ds.id_column))
                if ds.target.column in block.schema.names and len(target_values) < 100:
                    target_values |= set(pc.unique(block.column(ds.target.column).drop_null()).to_pylist())
                codes, day_names = _day_codes(config, block, first)
                block = _pseudonymised(block, ds.pii_columns)
                lines = pa.array(np.arange(first, first + block.num_rows, dtype="int64"))
                block = pa.RecordBatch.from_arrays([*block.columns, lines], schema=schema)
                order = np.argsort(codes, kind="stable")
                sorted_codes = codes[order]
                block = block.take(pa.array(order))
                bounds = np.flatnonzero(sorted_codes[1:] != sorted_codes[:-1]) + 1
                for lo, hi in zip(np.r_[0, bounds], np.r_[bounds, len(sorted_codes)], strict=True):
                    day = day_names[sorted_codes[lo]]
                    if day not in writers:
                        writers[day] = pa.ipc.new_file(str(staged / split_file(day)), schema, options=_IPC_OPTIONS)
                    writers[day].write_batch(block.slice(lo, hi - lo))
                    rows[day] = rows.get(day, 0) + int(hi - lo)
                total += block.num_rows
                if total % 500_000 < block.num_rows:
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
                "format": SPLIT_FORMAT,
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


def split_file(day: str) -> str:
    return f"dt={day}.arrow"


def read_day_from_index(config: PipelineConfig, storage: Storage, day: dt.date) -> Delivery:
    key, manifest = source_index(config, storage)
    if day.isoformat() not in manifest["days"]:
        raise NoDelivery(f"source {config.dataset.source.uri} has no rows for {day} (dataset {config.dataset.name})")
    rows = int(manifest["days"][day.isoformat()])
    check_rows(rows, f"{config.dataset.source.uri} ({day})", config.dataset.source.max_rows)
    name = split_file(day.isoformat())
    data = storage.read_partition_file(key, name)
    try:
        table = pa.ipc.open_file(pa.BufferReader(data)).read_all().combine_chunks()
    except (pa.ArrowInvalid, OSError) as exc:  # a damaged cache: no retry would mend it
        raise ArtefactError(
            f"{storage.uri(key)}/{name}: not a readable Arrow file ({exc}); delete {storage.uri(key)} "
            "and the next ingest splits the source again"
        ) from exc
    lines = table.column(LINE_COLUMN).to_numpy()
    return Delivery(
        day=day,
        text_frame=None,
        table=table.drop_columns([LINE_COLUMN]),
        lines=lines,
        files=[config.dataset.source.uri],
        digest=hashlib.sha256(data).hexdigest(),
        row_label="line" if config.dataset.source.format == "csv" else "row",
    )
