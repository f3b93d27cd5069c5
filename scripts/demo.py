"""`make demo`: the main job on the embedded default, through Airflow.

Runs the training_pipeline DAG as of `demo.train_as_of`, then the batch_scoring DAG
for each of `demo.score_days` (params.yaml), with `dag.test()` on a local SQLite
metadata DB, and prints where the predictions, models and reports are.
"""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import airflow_env  # noqa: E402

airflow_env.apply()

import datetime as dt  # noqa: E402


def _step(message: str) -> None:
    print(f"\n==> {message}", flush=True)


def run_dag(bag, dag_id: str, day: dt.date):
    import pendulum

    logical = pendulum.datetime(day.year, day.month, day.day, tz="UTC")
    started = time.monotonic()
    run = bag.dags[dag_id].test(logical_date=logical)
    state = str(getattr(run.state, "value", run.state))
    ran = {ti.task_id: str(getattr(ti.state, "value", ti.state)) for ti in run.get_task_instances()}
    if set(ran) != set(bag.dags[dag_id].task_ids):
        # Airflow marks a run with no task instances (e.g. before start_date) as success.
        raise SystemExit(f"{dag_id} for {day}: tasks did not run: {set(bag.dags[dag_id].task_ids) - set(ran)}")
    print(f"    {dag_id} {day}: {state} in {time.monotonic() - started:.1f}s", flush=True)
    if state != "success":
        raise SystemExit(f"{dag_id} for {day} ended {state}; see the task logs above")


def main() -> int:
    from pipeline.config import load_config

    config = load_config()
    _step(f"Airflow metadata DB (SQLite) in {airflow_env.airflow_env()['AIRFLOW_HOME']}")
    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], check=True,
                   stdout=subprocess.DEVNULL)

    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(str(airflow_env.ROOT / "dags"))
    if bag.import_errors:
        raise SystemExit(f"DAG import errors: {bag.import_errors}")

    _step(f"training_pipeline as of {config.demo.train_as_of} (storage: {config.storage.root})")
    run_dag(bag, "training_pipeline", config.demo.train_as_of)
    for i, day in enumerate(config.demo.score_days, 1):
        _step(f"batch_scoring {day} ({i}/{len(config.demo.score_days)})")
        run_dag(bag, "batch_scoring", day)

    from pipeline import layout, registry
    from pipeline.storage import open_storage
    from pipeline.validation import data_docs_index

    storage = open_storage(config.storage.root)
    version = registry.champion_version(storage, config.model_name)
    manifest = registry.read_manifest(storage, config.model_name, version)
    vkey = layout.model_version(config.model_name, version)
    metrics = manifest.get("metrics", {})
    _step("Done. Where things are:")
    print(f"    predictions   {storage.uri(f'predictions/{config.model_name}')}/dt=YYYY-MM-DD/*.parquet")
    for day in config.demo.score_days:
        m = storage.read_manifest(layout.predictions_partition(config.model_name, day))
        print(f"                  dt={day}: {m['row_count']} rows, model {m['model_version']}")
    print(f"    champion      {version}  (roc_auc {metrics.get('roc_auc', float('nan')):.3f}, "
          f"pr_auc {metrics.get('pr_auc', float('nan')):.3f})")
    print(f"    model files   {storage.uri(vkey)}/ (model.joblib, manifest.json, gate.json)")
    print(f"    evaluation    {storage.uri(vkey + '/evaluation.html')}")
    print(f"    data docs     {data_docs_index(config)}")
    print(f"    raw batches   {storage.uri(f'raw/{config.dataset.name}')}/")
    print(f"    DVC snapshot  {manifest['data']['dvc'].get('dvc_file', 'disabled')} "
          f"md5 {manifest['data']['dvc'].get('md5', '-')}")
    print(f"    try:  duckdb -c \"select model_version, count(*), avg(score) from "
          f"'{storage.uri(f'predictions/{config.model_name}')}/*/*.parquet' group by 1\"")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
