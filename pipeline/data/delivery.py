"""Reading one day's delivery as text, without reading the rest of the source.

Two source shapes (``dataset.source.uri``):

* **one file per day** (the usual production shape): a template with ``{date}``
  (``s3://landing/credit/dt={date}/*.csv``); glob characters select several files.
* **one file for every day** (the demo): rows are assigned to days by event time or
  by a stable hash of the id. The file is read once, streamed and split into one
  Parquet file per day under ``cache/source/<dataset>/<fingerprint>/``; each day's
  ingest then reads only its own rows. The split also records which columns parse
  as numbers and which target values occur, for the data contract.

Cells stay text here (``None`` where missing); typing is the contract's job. Row
labels are source line numbers for CSV (the header is line 1) and row numbers for
Parquet, so messages point at what a person can open.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import io
import logging
import os
import zlib

import numpy as np
import pandas as pd
import pyarrow as pa

from pipeline.core import layout
from pipeline.core.errors import DeliveryTooLarge, NoDelivery, OutsideLandingArea, PartitionNotFound, SourceError
from pipeline.core.settings import PipelineConfig
from pipeline.core.storage import Storage
from pipeline.data.privacy import pseudonymise
from pipeline.data.source import is_per_day, landing_root, missing_tokens, to_float

log = logging.getLogger(__name__)

LINE_COLUMN = "_line"


@dataclasses.dataclass
class Delivery:
    day: dt.date
    text: pd.DataFrame  # object cells, None where missing; index = line/row labels
    files: list[str]  # what was read
    digest: str  # sha256 of the delivered bytes (or of the day's split)
    raw: dict[str, bytes] | None = None  # the delivered files, kept for quarantine
    row_label: str = "line"

    @property
    def delivery_id(self) -> str:
        return self._id

    def __post_init__(self):
        now = dt.datetime.now(dt.UTC)
        self._id = f"{now:%Y%m%dT%H%M%S%f}-{self.digest[:8]}"


# --------------------------------------------------------------------------- bytes -> text


_CHUNK = 1 << 20


def _decompress(data: bytes, uri: str, max_bytes: int | None = None) -> bytes:
    """The file's bytes, gunzipped for *.gz in chunks that never exceed `max_bytes` in total
    (a small gzip can inflate to many GB: it is refused as soon as it passes the limit)."""
    if not uri.endswith(".gz"):
        if max_bytes is not None and len(data) > max_bytes:
            raise DeliveryTooLarge(
                f"{uri}: {len(data)} bytes, over the limit of {max_bytes} bytes per delivery (dataset.source.max_bytes)"
            )
        return data
    limit = max_bytes if max_bytes is not None else 1 << 62
    out = io.BytesIO()
    view = memoryview(data)
    try:
        while True:  # one gzip member at a time (concatenated members are valid gzip)
            inflater = zlib.decompressobj(wbits=31)
            pending: bytes | memoryview = view
            while True:
                chunk = inflater.decompress(pending, _CHUNK)
                out.write(chunk)
                if out.tell() > limit:
                    raise DeliveryTooLarge(
                        f"{uri}: decompresses to more than {limit} bytes (from {len(data)} compressed; stopped "
                        "there), over the limit per delivery (dataset.source.max_bytes)"
                    )
                pending = inflater.unconsumed_tail
                if inflater.eof or (not pending and not chunk):
                    break
            if not inflater.eof:
                raise EOFError
            rest = inflater.unused_data
            if not rest.strip(b"\x00"):
                break
            view = memoryview(rest)
    except EOFError as exc:
        raise SourceError(
            f"{uri}: truncated gzip file (it ends before the end-of-stream marker); "
            "the delivery was cut off, ask for it again"
        ) from exc
    except zlib.error as exc:
        raise SourceError(f"{uri}: corrupt gzip file ({exc})") from exc
    return out.getvalue()


def _check_rows(rows: int, uri: str, max_rows: int | None) -> None:
    if max_rows is not None and rows > max_rows:
        raise DeliveryTooLarge(
            f"{uri}: {rows} data rows, over the limit of {max_rows} rows per delivery (dataset.source.max_rows)"
        )


def _utf8(data: bytes, uri: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        col = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise SourceError(
            f"{uri}: line {line} is not UTF-8 text (byte 0x{data[exc.start]:02x} at "
            f"column {col}); re-export the file as UTF-8"
        ) from exc


def normalise(frame: pd.DataFrame, tokens: tuple[str, ...]) -> pd.DataFrame:
    """Strip cells and turn the configured spellings of 'missing' into None (vectorised)."""
    out = {}
    missing = list(tokens)
    for col in frame.columns:
        values = frame[col].astype(object)
        present = values.notna()
        stripped = values.where(~present, values[present].astype(str).str.strip()) if present.any() else values
        out[col] = stripped.where(present & ~stripped.isin(missing), None).astype(object)
    result = pd.DataFrame(out, index=frame.index)
    result.columns = [str(c).strip() for c in frame.columns]
    return result


def parse_csv(
    data: bytes,
    uri: str,
    delimiter: str,
    tokens: tuple[str, ...],
    first_line: int = 2,
    max_bytes: int | None = None,
    max_rows: int | None = None,
) -> pd.DataFrame:
    raw = _decompress(data, uri, max_bytes)
    # Lines bound rows from above (quoted newlines only lower the count): no parse past the limit.
    _check_rows(max(raw.count(b"\n") - 1, 0), uri, max_rows)
    inflated = len(raw)
    text = _utf8(raw, uri)
    del raw
    if not text.strip():
        raise SourceError(f"{uri}: empty file (no header, no rows)")
    try:
        frame = pd.read_csv(
            io.StringIO(text), sep=delimiter, dtype=str, keep_default_na=False, na_filter=False, engine="c"
        )
    except pd.errors.ParserError as exc:
        raise SourceError(f"{uri}: malformed CSV: {exc}") from exc
    if frame.empty:
        raise SourceError(f"{uri}: header only, no data rows")
    _check_rows(len(frame), uri, max_rows)
    frame.index = pd.RangeIndex(first_line, first_line + len(frame))
    frame = normalise(frame, tokens)
    frame.attrs["delivered_bytes"] = inflated
    return frame


def parse_parquet(
    data: bytes, uri: str, tokens: tuple[str, ...], max_bytes: int | None = None, max_rows: int | None = None
) -> pd.DataFrame:
    import pyarrow.parquet as pq

    try:
        source = io.BytesIO(_decompress(data, uri, max_bytes))
        meta = pq.ParquetFile(source).metadata
        _check_rows(meta.num_rows, uri, max_rows)
        # Column chunks decompress to their recorded sizes: refuse before inflating them.
        inflated = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
        if max_bytes is not None and inflated > max_bytes:
            raise DeliveryTooLarge(
                f"{uri}: decompresses to {inflated} bytes, over the limit of {max_bytes} bytes "
                "per delivery (dataset.source.max_bytes)"
            )
        table = pq.read_table(source)
    except SourceError:
        raise
    except Exception as exc:  # pyarrow raises several types for truncated or corrupt files
        raise SourceError(f"{uri}: not a readable Parquet file ({exc}); the delivery may be truncated") from exc
    if table.num_rows == 0:
        raise SourceError(f"{uri}: no data rows")
    cols = {}
    for name in table.column_names:
        cols[name] = table.column(name).cast(pa.string()).to_pandas().astype(object)
    frame = pd.DataFrame(cols)
    frame = frame.where(frame.notna(), None)
    return normalise(frame, tokens)


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


def _read_file(uri: str, storage: Storage) -> bytes:
    try:
        return storage.read_external(uri)
    except FileNotFoundError as exc:
        raise NoDelivery(f"source file not found: {uri}") from exc


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
        data = _read_file(uri, storage)
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
        text=text,
        files=files,
        digest=digest.hexdigest(),
        raw=raw,
        row_label="line" if src.format == "csv" else "row",
    )


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

        data = _read_file(uri, storage)
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
    data = _decompress(_read_file(uri, storage), uri)  # raises the gzip errors with their names
    if "UTF8" in str(exc) or "utf-8" in str(exc).lower():
        _utf8(data, uri)
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
                    id_integer = _whole_numbers(block[ds.id_column])
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


def _whole_numbers(values: pd.Series) -> bool:
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
    _check_rows(rows, f"{config.dataset.source.uri} ({day})", config.dataset.source.max_rows)
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
            "id_is_integer": bool(id_col in text.columns and _whole_numbers(text[id_col])) if id_col else False,
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
