"""Ingest of a training window from a large single-file source vs the CSV reader itself.

Builds a ~3M-row source (the demo CSV replicated with new ids: ~33k rows on each of 90 days,
gzip), then measures, each in its own process:

* baseline: one ``pyarrow.csv.read_csv`` of that file (the floor: read and parse, nothing else);
* ours: the 45-day training window's ingest (split the source by day once, then per day type
  against the contract, stage, publish the labels);
* one more day's ingest and validate afterwards (split cached), on that source and on the demo's.

    .venv/bin/python benchmarks/ingest_scale.py [--factor 100]
"""

from __future__ import annotations

import argparse
import gzip
import shutil
import tempfile
import time
from pathlib import Path

import yaml
from harness import ROOT, machine, measure, record

READER_SETUP = "import pyarrow.csv as pcsv"
READER = """
table = pcsv.read_csv({source!r})
extra = {{"rows": table.num_rows}}
"""
STEPS_SETUP = "from pipeline import steps\nimport pipeline.data.ingest, pipeline.data.validation"
WINDOW = """
result = steps.ingest_window({as_of!r}, {params!r})
extra = {{"rows": result["rows_staged"], "days": result["staged_days"]}}
"""
DAY_INGEST = """
result = steps.ingest({day!r}, {params!r})
extra = {{"rows": result["rows"]}}
"""
DAY_VALIDATE = """
steps.validate({day!r}, {params!r})
"""


def big_source(path: Path, factor: int) -> int:
    import pandas as pd

    demo = pd.read_csv(ROOT / "sources/credit_default/UCI_Credit_Card.csv.gz", dtype=str, keep_default_na=False)
    ids = pd.to_numeric(demo["ID"])
    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=1) as fh:
        for k in range(factor):
            part = demo.copy()
            part["ID"] = (ids + k * 100_000).astype(str)
            fh.write(part.to_csv(index=False, header=(k == 0)).encode())
    return len(demo) * factor


def params_for(tmp: Path, source: Path, name: str, window_days: int) -> str:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["dataset"]["source"] = {"uri": str(source), "format": "csv"}
    params["storage"] = {"root": str(tmp / f"storage-{name}")}
    params["validation"]["gx_root"] = str(tmp / f"gx-{name}")
    params["validation"]["max_rows"] = 1_000_000
    params["training"]["window_days"] = window_days
    params["training"]["holdout_days"] = min(params["training"]["holdout_days"], max(1, window_days // 4))
    params["dvc"] = {"enabled": False}
    path = tmp / f"params-{name}.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    shutil.copytree(
        ROOT / "great_expectations",
        tmp / f"gx-{name}",
        dirs_exist_ok=True,
        ignore=shutil.ignore_patterns("uncommitted", ".pipeline.lock"),
    )
    return str(path)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--factor", type=int, default=100, help="copies of the demo CSV (100 = 3M rows)")
    ap.add_argument("--window-days", type=int, default=45)
    args = ap.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    source = tmp / "big.csv.gz"
    started = time.perf_counter()
    rows = big_source(source, args.factor)
    print(
        f"ingest: source of {rows} rows, {source.stat().st_size / 1e6:.0f} MB gzip ({time.perf_counter() - started:.0f} s)"
    )
    as_of, day = "2025-03-01", "2025-03-02"
    big = params_for(tmp, source, "big", args.window_days)
    demo = params_for(tmp, ROOT / "sources/credit_default/UCI_Credit_Card.csv.gz", "demo", args.window_days)
    reader = measure("baseline: pyarrow.csv.read_csv of the file", READER.format(source=str(source)), READER_SETUP)
    window = measure(f"ours: {args.window_days}-day window ingest", WINDOW.format(as_of=as_of, params=big), STEPS_SETUP)
    figures = {
        "source_rows": rows,
        "source_mb_gzip": round(source.stat().st_size / 1e6),
        "window_days": args.window_days,
        "machine": machine(),
        "baseline_pyarrow_read_csv": reader,
        "window_ingest": window,
        "day_ingest_big": measure(
            "one more day: ingest (big source)", DAY_INGEST.format(day=day, params=big), STEPS_SETUP
        ),
        "day_validate_big": measure(
            "one more day: validate (big source)", DAY_VALIDATE.format(day=day, params=big), STEPS_SETUP
        ),
        "day_ingest_demo": measure(
            "one day: ingest (demo source)", DAY_INGEST.format(day=day, params=demo), STEPS_SETUP
        ),
        "day_validate_demo": measure(
            "one day: validate (demo source)", DAY_VALIDATE.format(day=day, params=demo), STEPS_SETUP
        ),
    }
    figures["window_over_read_csv"] = round(window["seconds"] / reader["seconds"], 2)
    figures["acceptance"] = {
        "window <= 3x read_csv": figures["window_over_read_csv"] <= 3,
        "window peak RSS <= 1 GB": window["peak_rss_mb"] <= 1024,
    }
    record("ingest", figures)
    shutil.rmtree(tmp, ignore_errors=True)
    return figures


if __name__ == "__main__":
    main()
