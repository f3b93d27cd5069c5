"""The training_pipeline DAG end to end under ``dag.test()`` (SQLite metadata DB), with each
task's time, vs the same steps in one process without Airflow (``steps.run_training``).

    .venv/bin/python benchmarks/training_dag.py [--window-days 30]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from harness import ROOT, machine, measure, record

DAG_SETUP = """
import os, sys, subprocess
sys.path.insert(0, {scripts!r})
import airflow_env
airflow_env.apply(home={home!r})
os.environ["PIPELINE_PARAMS"] = {params!r}
subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], check=True,
               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
import logging
logging.disable(logging.INFO)
import pendulum
from airflow.dag_processing.dagbag import DagBag
bag = DagBag({dags!r})
dag = bag.get_dag("training_pipeline")
assert dag is not None, bag.import_errors
dag.deadline = None  # dag.test() cannot finish a DAG with a DeadlineAlert (tests/helpers.py)
"""
DAG = """
run = dag.test(logical_date=pendulum.datetime(2025, 3, 1, tz="UTC"))
extra = {"state": str(getattr(run.state, "value", run.state)),
         "task_seconds": {ti.task_id: round(ti.duration or 0.0, 2) for ti in run.get_task_instances()}}
"""
STEPS_SETUP = "from pipeline import steps\nimport pipeline.data.ingest, pipeline.data.validation, pipeline.model.train, pipeline.model.evaluate"
STEPS = """
result = steps.run_training("2025-03-01", {params!r})
extra = {{"promoted": result["register"]["promoted"]}}
"""


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--window-days", type=int, default=None, help="default: params.yaml's")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(ROOT / "tests"))
    from conftest import write_params

    work = Path(tempfile.mkdtemp(prefix="bench-training-"))
    training = (
        {"window_days": args.window_days, "holdout_days": max(2, args.window_days // 4)} if args.window_days else {}
    )
    (work / "dag").mkdir()
    (work / "steps").mkdir()
    dag_params = write_params(work / "dag", training=training)
    steps_params = write_params(work / "steps", training=training)
    print("training_pipeline under dag.test() vs steps.run_training", flush=True)
    paths = {
        "scripts": str(ROOT / "scripts"),
        "home": str(work / "airflow"),
        "params": str(dag_params),
        "dags": str(ROOT / "dags"),
    }
    dag = measure("ours: training_pipeline under dag.test()", DAG, DAG_SETUP.format(**paths), threads=2)
    if dag.get("state") != "success":
        raise SystemExit(f"training_pipeline ended {dag.get('state')}: {json.dumps(dag)}")
    plain = measure(
        "baseline: the same steps, one process", STEPS.format(params=str(steps_params)), STEPS_SETUP, threads=2
    )
    figures = {
        "machine": machine(),
        "window_days": args.window_days or "params.yaml",
        "dag_test": dag,
        "steps_in_one_process": plain,
        "orchestration_overhead": round(dag["seconds"] / plain["seconds"], 3),
    }
    record("training_dag", figures)
    subprocess.run(["rm", "-rf", str(work)], check=False)
    return figures


if __name__ == "__main__":
    main()
