"""Scale-out scoring of a day of >= 1M rows: one task vs row-group ranges scored by parallel tasks.

Trains a small champion, builds a validated day of --rows rows (the window's rows replicated
with new ids, row groups of storage.row_group_rows), then, each in its own processes:

* single task: `python -m pipeline score` with scoring.rows_per_task above the day's size
  (one range; threads per task = the machine's cores, as one task has the machine);
* mapped: plan in-process, every range scored by its own `score_range` process, two at a time
  (a Celery worker with concurrency 2: PIPELINE_TASKS_PER_MACHINE=2, so 1 thread each), then
  `publish_scoring`;

and checks the two partitions are equal row for row (all columns but scored_at).
Results: benchmarks/results/mapped_scoring.json (wall times, ratio mapped / single, threads).

    .venv/bin/python benchmarks/mapped_scoring.py [--rows 1000000] [--rows-per-task 250000]
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
OUT = ROOT / "benchmarks" / "results" / "mapped_scoring.json"
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "scripts"))
DAY = "2025-03-20"

RANGE_TASK = r"""
import json, sys, time
from pipeline import steps
from pipeline.ops.threads import threads_per_task
from pipeline.core.settings import load_config
job = json.loads(open(sys.argv[1]).read())
t0 = time.perf_counter()
part = steps.score_range(job["plan"], job["range"], sys.argv[3])
part["threads"] = threads_per_task(load_config(sys.argv[3]))
part["wall"] = round(time.perf_counter() - t0, 2)
open(sys.argv[2], "w").write(json.dumps(part))
"""


def build_day(params: Path, rows: int) -> dict:
    import numpy as np
    import pandas as pd
    import pyarrow as pa

    from pipeline import steps
    from pipeline.core import layout

    config, storage = steps.open_pipeline(str(params))
    ds = config.dataset.name
    frames = [
        storage.read_partition(k).to_pandas()
        for k in (f"raw/{ds}/{d}" for d in storage.list_children(f"raw/{ds}"))
        if storage.partition_exists(k)
    ]
    base = pd.concat(frames, ignore_index=True)
    copies = -(-rows // len(base))
    day = pd.concat([base] * copies, ignore_index=True).iloc[:rows].copy()
    day["ID"] = pd.array(np.arange(1, rows + 1), dtype=day["ID"].dtype)
    key = layout.raw_partition(ds, pd.Timestamp(DAY).date())
    template = storage.read_manifest(f"raw/{ds}/{storage.list_children(f'raw/{ds}')[0]}")
    manifest = storage.write_partition(
        key,
        {"part-00000.parquet": pa.Table.from_pandas(day, preserve_index=False)},
        manifest={"schema": template["schema"], "day": DAY, "benchmark": True},
    )
    # The benchmark measures scoring: record the day as validated (GE on 1M rows is not what is timed).
    storage.write_json(
        layout.validation_record(ds, pd.Timestamp(DAY).date()),
        {"success": True, "raw_publish_id": manifest["publish_id"], "benchmark": True},
    )
    return {"rows": rows, "row_groups": -(-rows // config.storage.row_group_rows)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--rows-per-task", type=int, default=250_000)
    ap.add_argument("--parallel", type=int, default=2, help="range tasks at once (worker concurrency)")
    args = ap.parse_args()

    from conftest import write_params

    from pipeline import steps

    work = Path(tempfile.mkdtemp(prefix="bench-mapped-"))
    params = write_params(
        work,
        training={"window_days": 16, "holdout_days": 4, "cv_folds": 3, "estimator_params": {"max_iter": 60}},
        scoring={"rows_per_task": args.rows_per_task},
    )
    single_params = work / "single.yaml"
    single = yaml.safe_load(params.read_text())
    single["scoring"]["rows_per_task"] = 10**12
    single_params.write_text(yaml.safe_dump(single))
    env = {**os.environ, "PIPELINE_PARAMS": str(params)}
    env.pop("PIPELINE_STORAGE_URI", None)
    print(f"training a champion in {work} ...", flush=True)
    steps.run_training("2025-03-01", str(params))
    print(f"building a validated day of {args.rows:,} rows ...", flush=True)
    day = build_day(params, args.rows)
    config, storage = steps.open_pipeline(str(params))
    key = f"predictions/{config.model_name}/dt={DAY}"

    print("single task ...", flush=True)
    t0 = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "pipeline", "--params", str(single_params), "score", "--date", DAY],
        env={**env, "PIPELINE_TASKS_PER_MACHINE": "1"},
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    single_seconds = time.perf_counter() - t0
    single_table = storage.read_partition(key).to_pandas()
    from pipeline.ops.threads import cores

    print(f"mapped ({args.parallel} at a time) ...", flush=True)
    t0 = time.perf_counter()
    jobs = steps.scoring_jobs(DAY, str(params))
    pending = list(enumerate(jobs))
    running: list[tuple[subprocess.Popen, Path]] = []
    results = []
    while pending or running:
        while pending and len(running) < args.parallel:
            i, job = pending.pop(0)
            job_file, out_file = work / f"job-{i}.json", work / f"part-{i}.json"
            job_file.write_text(json.dumps(job))
            proc = subprocess.Popen(
                [sys.executable, "-c", RANGE_TASK, str(job_file), str(out_file), str(params)],
                env={**env, "PIPELINE_TASKS_PER_MACHINE": str(args.parallel)},
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            running.append((proc, out_file))
        for proc, out_file in list(running):
            if proc.poll() is not None:
                if proc.returncode:
                    raise SystemExit(f"range task failed ({out_file})")
                results.append(json.loads(out_file.read_text()))
                running.remove((proc, out_file))
        time.sleep(0.05)
    published = steps.publish_scoring(jobs[0]["plan"], sorted(results, key=lambda p: p["part"]), str(params))
    mapped_seconds = time.perf_counter() - t0
    mapped_table = storage.read_partition(key).to_pandas()

    columns = [c for c in single_table.columns if c != "scored_at"]
    a = single_table.sort_values("ID").reset_index(drop=True)[columns]
    b = mapped_table.sort_values("ID").reset_index(drop=True)[columns]
    equal = len(a) == len(b) == args.rows and a.equals(b)
    result = {
        "rows": args.rows,
        "row_group_rows": config.storage.row_group_rows,
        "row_groups": day["row_groups"],
        "cores": cores(),
        "single_task": {"seconds": round(single_seconds, 2), "threads_per_task": cores()},
        "mapped": {
            "seconds": round(mapped_seconds, 2),
            "ranges": len(jobs),
            "parallel_tasks": args.parallel,
            "threads_per_task": sorted({r["threads"] for r in results}),
            "range_task_seconds": [r["wall"] for r in sorted(results, key=lambda p: p["part"])],
            "published_rows": published["rows"],
        },
        "ratio_mapped_over_single": round(mapped_seconds / single_seconds, 3),
        "equal_row_for_row": equal,
        "note": "each side includes process start-up; range tasks each load the model once",
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    return 0 if equal else 1


if __name__ == "__main__":
    sys.exit(main())
