"""Scoring one day of 1M and 10M rows (the demo's 23 features): the `score` step vs in-memory
``predict_proba`` and vs a minimal "read Parquet -> predict_proba -> write Parquet" script, and
mapped ranges run 1 vs 2 at a time (one thread per task: what a second worker adds).

Every side runs in its own process with one thread per task (OMP_NUM_THREADS=1), so the ratios
compare code, not thread counts. Peak RSS is the process's.

    .venv/bin/python benchmarks/scoring.py [--rows 1000000 10000000] [--rows-per-task 1000000]
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
from harness import ROOT, machine, measure, record

sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))
DAY = "2025-03-20"

LOAD_MODEL = """
import numpy as np, pyarrow.parquet as pq, pandas as pd
from pipeline import steps
from pipeline.model import registry
from pipeline.model.features import feature_frame
from pipeline.data.source import Schema
config, storage = steps.open_pipeline({params!r})
version = registry.champion_version(storage, config.model_name)
model, manifest = registry.load_model(storage, config.model_name, version)
schema = Schema.from_dict(manifest["schema"])
import datetime as dt
from pipeline.core import layout
raw = storage.open_input(layout.raw_partition(config.dataset.name, dt.date.fromisoformat({day!r})) + "/part-00000.parquet")
"""
IN_MEMORY_SETUP = (
    LOAD_MODEL
    + """
X = feature_frame(pq.read_table(raw).to_pandas(), schema)
"""
)
IN_MEMORY = """
scores = model.predict_proba(X)[:, 1]
extra = {"rows": len(scores)}
"""
MINIMAL = """
frame = pq.read_table(raw).to_pandas()
scores = model.predict_proba(feature_frame(frame, schema))[:, 1]
out = pd.DataFrame({{"ID": frame["ID"], "score": scores, "prediction": (scores >= 0.5).astype("int8"),
                    "model_version": version}})
out.to_parquet({out!r})
extra = {{"rows": len(out)}}
"""
OURS_SETUP = """
from pipeline import steps
import pipeline.model.score, pipeline.data.validation  # imported before the clock, as the baselines' are
"""
OURS = """
result = steps.score({day!r}, {params!r})
extra = {{"rows": result["rows"]}}
"""
RANGE_TASK = r"""
import json, sys
from pipeline import steps
job = json.loads(open(sys.argv[1]).read())
open(sys.argv[2], "w").write(json.dumps(steps.score_range(job["plan"], job["range"], sys.argv[3])))
"""


def mapped(params: Path, work: Path, parallel: int) -> dict:
    """Plan, run every range as its own process `parallel` at a time (one thread each), publish."""
    from pipeline import steps

    env = {**os.environ, "OMP_NUM_THREADS": "1", "PIPELINE_TASKS_PER_MACHINE": str(os.cpu_count() or 1)}
    started = time.perf_counter()
    jobs = steps.scoring_jobs(DAY, str(params))
    pending, running, parts = list(enumerate(jobs)), [], []
    while pending or running:
        while pending and len(running) < parallel:
            i, job = pending.pop(0)
            job_file, out_file = work / f"job-{parallel}-{i}.json", work / f"part-{parallel}-{i}.json"
            job_file.write_text(json.dumps(job))
            proc = subprocess.Popen(
                [sys.executable, "-c", RANGE_TASK, str(job_file), str(out_file), str(params)], env=env
            )
            running.append((proc, out_file))
        for proc, out_file in list(running):
            if proc.poll() is not None:
                if proc.returncode:
                    raise SystemExit(f"range task failed ({out_file})")
                parts.append(json.loads(out_file.read_text()))
                running.remove((proc, out_file))
        time.sleep(0.02)
    published = steps.publish_scoring(jobs[0]["plan"], sorted(parts, key=lambda p: p["part"]), str(params))
    seconds = time.perf_counter() - started
    print(f"  mapped, {parallel} at a time ({len(jobs)} ranges)            {seconds:>9.3f} s", flush=True)
    return {"seconds": round(seconds, 3), "ranges": len(jobs), "parallel": parallel, "rows": published["rows"]}


def build_day(params: Path, rows: int) -> dict:
    """A validated day of `rows` rows: the window's rows replicated with new ids."""
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


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 10_000_000])
    ap.add_argument("--rows-per-task", type=int, default=1_000_000, help="rows per mapped range task")
    ap.add_argument("--single-range-rows", type=int, default=250_000, help="rows per range inside one task")
    args = ap.parse_args(argv)
    from conftest import write_params

    from pipeline import steps

    work = Path(tempfile.mkdtemp(prefix="bench-scoring-"))
    params = write_params(
        work,
        training={"window_days": 16, "holdout_days": 4, "cv_folds": 3, "estimator_params": {"max_iter": 60}},
        scoring={"rows_per_task": args.rows_per_task},
        storage={"row_group_rows": min(args.single_range_rows, args.rows_per_task)},
    )
    # One task loops over ranges of --single-range-rows (bounded memory); mapped tasks take one
    # range of --rows-per-task each.
    single = yaml.safe_load(params.read_text())
    single["scoring"]["rows_per_task"] = args.single_range_rows
    single_params = work / "single.yaml"
    single_params.write_text(yaml.safe_dump(single))
    os.environ.pop("PIPELINE_STORAGE_URI", None)
    print(f"scoring: training a small champion in {work} ...", flush=True)
    steps.run_training("2025-03-01", str(params))
    figures: dict = {"machine": machine(), "features": None, "days": {}}
    for rows in args.rows:
        print(f"scoring a validated day of {rows:,} rows", flush=True)
        build_day(params, rows)
        paths = {"params": str(single_params), "day": DAY, "out": str(work / "minimal.parquet")}
        env = {"PIPELINE_TASKS_PER_MACHINE": str(os.cpu_count() or 1)}  # one thread per task
        ours = measure("ours: score step (one task)", OURS.format(**paths), OURS_SETUP, env=env)
        in_memory = measure("baseline: in-memory predict_proba", IN_MEMORY, IN_MEMORY_SETUP.format(**paths), env=env)
        minimal = measure(
            "baseline: minimal read-predict-write", MINIMAL.format(**paths), LOAD_MODEL.format(**paths), env=env
        )
        one = mapped(params, work, 1)
        two = mapped(params, work, 2)
        for side in (ours, in_memory, minimal, one, two):
            side["rows_per_second"] = round(rows / side["seconds"])
        figures["days"][str(rows)] = {
            "ours": ours,
            "in_memory_predict_proba": in_memory,
            "minimal_script": minimal,
            "mapped_1_at_a_time": one,
            "mapped_2_at_a_time": two,
            "throughput_vs_in_memory": round(in_memory["seconds"] / ours["seconds"], 3),
            "speedup_vs_minimal": round(minimal["seconds"] / ours["seconds"], 3),
            "two_workers_over_one": round(one["seconds"] / two["seconds"], 3),
        }
    from pipeline.data.source import Schema
    from pipeline.model import registry

    config, storage = steps.open_pipeline(str(params))
    manifest = registry.read_manifest(storage, config.model_name, registry.champion_version(storage, config.model_name))
    figures["features"] = len(Schema.from_dict(manifest["schema"]).features)
    days = figures["days"]
    small, large = str(min(args.rows)), str(max(args.rows))
    figures["acceptance"] = {
        "largest day: peak RSS <= 1.5 GB": days[large]["ours"]["peak_rss_mb"] <= 1536,
        "largest day: peak RSS within 20% of the smallest's": days[large]["ours"]["peak_rss_mb"]
        <= 1.2 * days[small]["ours"]["peak_rss_mb"],
        "throughput >= 80% of in-memory predict_proba": all(d["throughput_vs_in_memory"] >= 0.8 for d in days.values()),
        # The largest day only: a day of one range has nothing to spread.
        "largest day: 2 workers >= 1.6x faster than 1": days[large]["two_workers_over_one"] >= 1.6,
    }
    record("scoring", figures)
    return figures


if __name__ == "__main__":
    main()
