"""Files outside the storage root (the landing area a source is delivered to): a local path or an
s3:// URI, reached with the storage's S3 endpoint and credentials. Stages call these through
:class:`~pipeline.core.storage.store.Storage` and never branch on the scheme themselves."""

from __future__ import annotations

import fnmatch
import glob
import os
from typing import Any

from pipeline.core.storage.s3 import S3Backend, S3Options, s3_failure, split_s3

GLOB_CHARACTERS = "*?["


def _bucket(uri: str, options: S3Options | None) -> tuple[S3Backend, str]:
    bucket, key = split_s3(uri)
    return S3Backend(f"s3://{bucket}", options), key


def read(uri: str, options: S3Options | None = None) -> bytes:
    if uri.startswith("s3://"):
        backend, key = _bucket(uri, options)
        return backend.read_bytes(key)
    with open(uri, "rb") as fh:
        return fh.read()


def version(uri: str, options: S3Options | None = None) -> str | None:
    """Size and ETag (S3) or size and mtime (local): changes whenever the file does; None if absent."""
    if uri.startswith("s3://"):
        backend, key = _bucket(uri, options)
        head = backend.head(key)
        return None if head is None else f"{head['ContentLength']}-{head['ETag']}"
    try:
        st = os.stat(uri)
    except FileNotFoundError:
        return None
    return f"{st.st_size}-{st.st_mtime_ns}"


def matching(pattern: str, options: S3Options | None = None) -> list[str]:
    """The files `pattern` names: itself when it has no glob characters (if it exists), else every
    match (on S3: the objects under the pattern's static prefix, matched with fnmatch)."""
    if not any(ch in pattern for ch in GLOB_CHARACTERS):
        return [pattern] if version(pattern, options) is not None and not os.path.isdir(pattern) else []
    return [uri for uri, _ in modified(pattern, options)]


def modified(pattern: str, options: S3Options | None = None) -> list[tuple[str, float]]:
    """Every file matching the glob `pattern`, sorted, with its last-modified time (epoch seconds)."""
    if not pattern.startswith("s3://"):
        found = []
        for path in sorted(glob.glob(pattern)):
            try:
                found.append((path, os.stat(path).st_mtime))
            except FileNotFoundError:  # removed between the listing and the stat
                continue
        return found
    prefix = pattern[: min(pattern.find(ch) for ch in GLOB_CHARACTERS if ch in pattern)]
    backend, key = _bucket(prefix, options)
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        listed = [
            (f"s3://{backend.bucket}/{o['Key']}", o["LastModified"].timestamp())
            for o in backend.objects(key, relative=False)
        ]
    except (BotoCoreError, ClientError) as exc:
        raise s3_failure("list", prefix, exc) from exc
    return sorted((u, t) for u, t in listed if fnmatch.fnmatchcase(u, pattern))


def open_stream(uri: str, options: S3Options | None = None) -> Any:
    """A pyarrow input stream of the file, gzip inflated when the name ends in .gz."""
    import pyarrow as pa

    compression = "gzip" if uri.endswith(".gz") else None
    if uri.startswith("s3://"):
        stream = pa.BufferReader(read(uri, options))
        return pa.CompressedInputStream(stream, "gzip") if compression else stream
    return pa.input_stream(uri, compression=compression)
