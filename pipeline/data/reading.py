"""A delivery as text: bytes inflated within the size limit, decoded as UTF-8 (the bad line named),
parsed as CSV or Parquet with every cell kept as text and the missing spellings turned into None."""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
import logging
import zlib

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.core.errors import DeliveryTooLarge, NoDelivery, SourceError
from pipeline.core.storage import Storage

log = logging.getLogger(__name__)

LINE_COLUMN = "_line"


@dataclasses.dataclass
class Delivery:
    """A day's delivery as text. Read from the single-file source's split it also carries the Arrow
    ``table`` (normalised text, one row per line; ``lines`` label its rows), so clean days are typed
    in Arrow without building Python objects; ``text`` is then built on first use only."""

    day: dt.date
    text_frame: pd.DataFrame | None  # object cells, None where missing; index = line/row labels
    files: list[str]  # what was read
    digest: str  # sha256 of the delivered bytes (or of the day's split)
    raw: dict[str, bytes] | None = None  # the delivered files, kept for quarantine
    row_label: str = "line"
    table: pa.Table | None = None  # normalised text columns (the split's days)
    lines: np.ndarray | None = None  # row labels of `table`

    @property
    def delivery_id(self) -> str:
        return self._id

    @property
    def text(self) -> pd.DataFrame:
        if self.text_frame is None:
            if self.table is None or self.lines is None:
                raise TypeError("a delivery holds its text as a frame or as an Arrow table with its lines")
            frame = self.table.to_pandas(types_mapper=lambda t: None).astype(object)
            frame = frame.where(frame.notna(), None)
            frame.index = pd.Index(self.lines)
            self.text_frame = frame
        return self.text_frame

    @property
    def columns(self) -> list[str]:
        return list(self.table.column_names) if self.table is not None else list(self.text.columns)

    @property
    def num_rows(self) -> int:
        return self.table.num_rows if self.table is not None else len(self.text)

    def __post_init__(self):
        now = dt.datetime.now(dt.UTC)
        self._id = f"{now:%Y%m%dT%H%M%S%f}-{self.digest[:8]}"


def read_file(uri: str, storage: Storage) -> bytes:
    try:
        return storage.read_external(uri)
    except FileNotFoundError as exc:
        raise NoDelivery(f"source file not found: {uri}") from exc


# --------------------------------------------------------------------------- bytes -> text


_CHUNK = 1 << 20


def decompress(data: bytes, uri: str, max_bytes: int | None = None) -> bytes:
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


def check_rows(rows: int, uri: str, max_rows: int | None) -> None:
    if max_rows is not None and rows > max_rows:
        raise DeliveryTooLarge(
            f"{uri}: {rows} data rows, over the limit of {max_rows} rows per delivery (dataset.source.max_rows)"
        )


def utf8_text(data: bytes, uri: str) -> str:
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


def normalise_array(values: pa.Array | pa.ChunkedArray, tokens: tuple[str, ...]) -> pa.Array | pa.ChunkedArray:
    """`normalise` for one Arrow text column, without a Python object per cell (Arrow's Unicode
    whitespace is exactly what Python's ``str.strip`` removes)."""
    stripped = pc.utf8_trim_whitespace(values)
    missing = pc.is_in(stripped, value_set=pa.array(list(tokens), type=pa.string()))
    return pc.if_else(missing, pa.scalar(None, type=pa.string()), stripped)


def parse_csv(
    data: bytes,
    uri: str,
    delimiter: str,
    tokens: tuple[str, ...],
    first_line: int = 2,
    max_bytes: int | None = None,
    max_rows: int | None = None,
) -> pd.DataFrame:
    raw = decompress(data, uri, max_bytes)
    # Lines bound rows from above (quoted newlines only lower the count): no parse past the limit.
    check_rows(max(raw.count(b"\n") - 1, 0), uri, max_rows)
    inflated = len(raw)
    text = utf8_text(raw, uri)
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
    check_rows(len(frame), uri, max_rows)
    frame.index = pd.RangeIndex(first_line, first_line + len(frame))
    frame = normalise(frame, tokens)
    frame.attrs["delivered_bytes"] = inflated
    return frame


def parse_parquet(
    data: bytes, uri: str, tokens: tuple[str, ...], max_bytes: int | None = None, max_rows: int | None = None
) -> pd.DataFrame:
    import pyarrow.parquet as pq

    try:
        source = io.BytesIO(decompress(data, uri, max_bytes))
        meta = pq.ParquetFile(source).metadata
        check_rows(meta.num_rows, uri, max_rows)
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
