"""`make bench`: every benchmark, each side measured in its own process in the same run, figures
in benchmarks/results.json; `--smoke` runs them at a size that only proves they work (CI).

    .venv/bin/python benchmarks/run.py [--smoke] [--only drift_stats scoring ...]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import drift_stats  # noqa: E402
import imports  # noqa: E402
import ingest_scale  # noqa: E402
import scoring  # noqa: E402
import training_dag  # noqa: E402
from harness import RESULTS  # noqa: E402

FULL = {
    "drift_stats": (drift_stats.main, []),
    "imports": (imports.main, []),
    "ingest": (ingest_scale.main, []),
    "scoring": (scoring.main, []),
    "training_dag": (training_dag.main, []),
}
SMOKE = {
    "drift_stats": (drift_stats.main, ["--rows", "5000"]),
    "imports": (imports.main, []),
    "ingest": (ingest_scale.main, ["--factor", "2", "--window-days", "10"]),
    "scoring": (scoring.main, ["--rows", "20000", "40000", "--rows-per-task", "20000", "--single-range-rows", "10000"]),
    "training_dag": (training_dag.main, ["--window-days", "10"]),
}


def table(results: dict) -> str:
    """The README's table: one line per benchmark with ours, the baseline and the ratio."""
    rows = ["| benchmark | ours | baseline | ratio | peak RSS (ours) |", "|---|---|---|---|---|"]
    if "ingest" in results:
        r = results["ingest"]
        rows.append(
            f"| ingest: {r['window_days']}-day window of a {r['source_rows'] / 1e6:.1f}M-row CSV | "
            f"{r['window_ingest']['seconds']:.1f} s | pyarrow.csv.read_csv {r['baseline_pyarrow_read_csv']['seconds']:.1f} s"
            f" | {r['window_over_read_csv']}x | {r['window_ingest']['peak_rss_mb']} MB |"
        )
    if "scoring" in results:
        for n, d in results["scoring"]["days"].items():
            rows.append(
                f"| scoring {int(n) / 1e6:g}M rows (one task, 1 thread) | {d['ours']['rows_per_second']:,} rows/s | "
                f"in-memory predict_proba {d['in_memory_predict_proba']['rows_per_second']:,} rows/s; "
                f"minimal script {d['minimal_script']['rows_per_second']:,} rows/s ({d['minimal_script']['peak_rss_mb']} MB)"
                f" | {d['throughput_vs_in_memory']}x of in-memory; 2 workers {d['two_workers_over_one']}x of 1 | "
                f"{d['ours']['peak_rss_mb']} MB |"
            )
    if "drift_stats" in results:
        r = results["drift_stats"]
        rows.append(
            f"| drift statistics {r['rows'] / 1e6:g}M vs {r['rows'] / 1e6:g}M x {r['columns']} | "
            f"{r['ours']['seconds']:.2f} s | naive scipy loop {r['baseline_naive_scipy']['seconds']:.2f} s | "
            f"{r['speedup_vs_naive']}x faster | {r['ours']['peak_rss_mb']} MB |"
        )
    if "training_dag" in results:
        r = results["training_dag"]
        rows.append(
            f"| training_pipeline under dag.test() | {r['dag_test']['seconds']:.1f} s | same steps without Airflow "
            f"{r['steps_in_one_process']['seconds']:.1f} s | {r['orchestration_overhead']}x | "
            f"{r['dag_test']['peak_rss_mb']} MB |"
        )
    if "imports" in results:
        r = results["imports"]
        rows.append(
            f"| `python -m pipeline --help`; `score` of a 320-row day | {r['cli_help_seconds']:.2f} s; "
            f"{r['score_process_seconds']:.2f} s | - | imports {r['score_import_share']:.0%} of `score` | - |"
        )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="tiny sizes: proves the benchmarks run (CI)")
    ap.add_argument("--only", nargs="+", choices=sorted(FULL), help="run these only")
    args = ap.parse_args(argv)
    plan = SMOKE if args.smoke else FULL
    for name in args.only or plan:
        run, arguments = plan[name]
        print(f"== {name} {' '.join(arguments)}", flush=True)
        run(arguments)
    results = json.loads(RESULTS.read_text())
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
