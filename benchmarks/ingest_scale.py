"""Ingest cost on a large single-file source (issue: reading one day must not re-read the source).

Builds a ~3M-row source (the demo CSV replicated with new ids: 90 days of ~33k rows), then
measures, each in its own process (peak RSS from getrusage):

* baseline: one full read-and-type of that source (read as text + type every column);
* the 45-day training window ingest (stage + labels; includes splitting the source once);
* one day's ingest and validate afterwards, on that source and on the demo source;
* optionally (--before REV) the same per-day figures with the code at git revision REV.

Ratios are against the baseline measured in the same run. Results: benchmarks/results/ingest_scale.json.

    .venv/bin/python benchmarks/ingest_scale.py [--factor 100] [--before c1c5266]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "ingest_scale.json"

MEASURE = r"""
import json, resource, sys, time, datetime as dt
sys.path.insert(0, {code!r})
t0 = time.perf_counter()
{body}
print(json.dumps({{"seconds": round(time.perf_counter() - t0, 2),
                   "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}}))
"""

BASELINE = """
from pipeline.config import load_config
from pipeline.source import coerce_types, read_source_text, resolve_schema
config = load_config({params!r})
text = read_source_text(config.dataset)
schema = resolve_schema(config.dataset, text)
typed = coerce_types(text, schema)
"""

WINDOW = """
from pipeline import steps
steps.ingest_window({as_of!r}, {params!r})
"""

DAY_INGEST = """
from pipeline import steps
steps.ingest({day!r}, {params!r})
"""

DAY_VALIDATE = """
from pipeline import steps
steps.validate({day!r}, {params!r})
"""


def measure(name: str, body: str, code: Path = ROOT) -> dict:
    env = {**os.environ, "PYTHONPATH": str(code), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", MEASURE.format(code=str(code), body=body)],
        cwd=code,
        capture_output=True,
        text=True,
        env=env,
    )
    if proc.returncode != 0:
        raise SystemExit(f"{name} failed:\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"  {name:<40} {result['seconds']:>8.2f} s  {result['peak_rss_mb']:>6} MB", flush=True)
    return result


def big_source(path: Path, factor: int) -> int:
    import pandas as pd

    demo = pd.read_csv(ROOT / "sources/credit_default/UCI_Credit_Card.csv.gz", dtype=str, keep_default_na=False)
    ids = pd.to_numeric(demo["ID"])
    with open(path, "wb") as raw:
        import gzip

        with gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=1) as fh:
            for k in range(factor):
                part = demo.copy()
                part["ID"] = (ids + k * 100_000).astype(str)
                fh.write(part.to_csv(index=False, header=(k == 0)).encode())
    return len(demo) * factor


def params_for(tmp: Path, source: Path, name: str, code: Path = ROOT) -> str:
    params = yaml.safe_load((code / "params.yaml").read_text())
    params["dataset"]["source"] = {"uri": str(source), "format": "csv"}
    params["storage"] = {"root": str(tmp / f"storage-{name}")}
    validation = params.setdefault("validation", {})
    validation["gx_root"] = str(tmp / f"gx-{name}")
    validation["max_rows"] = 1_000_000
    params["dvc"] = {"enabled": False}
    path = tmp / f"params-{name}.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    import shutil

    if (code / "great_expectations").exists():
        shutil.copytree(
            code / "great_expectations",
            tmp / f"gx-{name}",
            dirs_exist_ok=True,
            ignore=shutil.ignore_patterns("uncommitted", ".pipeline.lock"),
        )
    return str(path)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--factor", type=int, default=100, help="copies of the demo CSV (100 = 3M rows)")
    ap.add_argument("--before", help="git revision to measure per-day figures with, for comparison")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="ingest-scale-"))
    source = tmp / "big.csv.gz"
    started = time.perf_counter()
    rows = big_source(source, args.factor)
    print(f"source: {rows} rows, {source.stat().st_size / 1e6:.0f} MB gzip ({time.perf_counter() - started:.0f} s)")
    as_of, day = "2025-03-01", "2025-03-02"
    results: dict = {"rows": rows, "source_mb": round(source.stat().st_size / 1e6), "window_days": 45}
    big = params_for(tmp, source, "big")
    results["baseline_full_read_and_type"] = measure("baseline: full read-and-type", BASELINE.format(params=big))
    results["window_ingest"] = measure("45-day window ingest (splits once)", WINDOW.format(as_of=as_of, params=big))
    results["day_ingest_big"] = measure("one day ingest (3M source)", DAY_INGEST.format(day=day, params=big))
    results["day_validate_big"] = measure("one day validate (3M source)", DAY_VALIDATE.format(day=day, params=big))
    demo = params_for(tmp, ROOT / "sources/credit_default/UCI_Credit_Card.csv.gz", "demo")
    results["day_ingest_demo_first"] = measure(
        "one day ingest (demo, first: splits)", DAY_INGEST.format(day=day, params=demo)
    )
    results["day_validate_demo"] = measure("one day validate (demo)", DAY_VALIDATE.format(day=day, params=demo))
    results["day_ingest_demo"] = measure(
        "one day ingest (demo, split cached)", DAY_INGEST.format(day="2025-03-03", params=demo)
    )
    if args.before:
        worktree = tmp / "before"
        subprocess.run(["git", "worktree", "add", "-q", "--detach", str(worktree), args.before], cwd=ROOT, check=True)
        try:
            old_big = params_for(tmp, source, "old-big", worktree)
            old_demo = params_for(tmp, ROOT / "sources/credit_default/UCI_Credit_Card.csv.gz", "old-demo", worktree)
            results["before"] = {
                "revision": args.before,
                "day_ingest_big": measure(
                    "before: one day ingest (3M)", DAY_INGEST.format(day=day, params=old_big), worktree
                ),
                "day_validate_big": measure(
                    "before: one day validate (3M)", DAY_VALIDATE.format(day=day, params=old_big), worktree
                ),
                "day_ingest_demo": measure(
                    "before: one day ingest (demo)", DAY_INGEST.format(day=day, params=old_demo), worktree
                ),
                "day_validate_demo": measure(
                    "before: one day validate (demo)", DAY_VALIDATE.format(day=day, params=old_demo), worktree
                ),
            }
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(worktree)], cwd=ROOT)
    base = results["baseline_full_read_and_type"]["seconds"]
    results["window_over_baseline"] = round(results["window_ingest"]["seconds"] / base, 2)
    results["acceptance"] = {
        "window <= 3x baseline": results["window_over_baseline"] <= 3,
        "window peak <= 1.5 GB": results["window_ingest"]["peak_rss_mb"] <= 1536,
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(results, indent=2))
    print(json.dumps({k: results[k] for k in ("window_over_baseline", "acceptance")}, indent=2))
    print(f"written to {OUT}")


if __name__ == "__main__":
    main()
