"""`make demo`: the main job on the embedded default, through Airflow.

Runs the training_pipeline DAG as of `demo.train_as_of`, then the batch_scoring DAG
for each of `demo.score_days` (params.yaml), with `dag.test()` on a local SQLite
metadata DB, and prints where the predictions, models and reports are. Airflow's and the
tasks' own log lines go to `.airflow/demo.log` (`-v` prints them too).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path

VERBOSE = "-v" in sys.argv[1:]
_OUT = os.fdopen(os.dup(1), "w", buffering=1)  # the terminal, whatever happens to fd 1 and 2


def say(text: str = "") -> None:
    print(text, file=_OUT, flush=True)


@contextlib.contextmanager
def logs_to(path: Path):
    """Send everything written to stdout/stderr (Airflow, task logs, libraries) to `path`."""
    if VERBOSE:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(path, "a") as fh:
        os.dup2(fh.fileno(), 1)
        os.dup2(fh.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


sys.path.insert(0, str(Path(__file__).resolve().parent))
import airflow_env  # noqa: E402

airflow_env.apply()

import datetime as dt  # noqa: E402


def _step(message: str) -> None:
    say(f"==> {message}")


def run_dag(bag, dag_id: str, day: dt.date):
    import pendulum

    logical = pendulum.datetime(day.year, day.month, day.day, tz="UTC")
    started = time.monotonic()
    # dag.test() cannot finish a DAG with a DeadlineAlert in Airflow 3.3.2 (see tests/helpers.py);
    # deadlines matter for scheduled runs only.
    bag.dags[dag_id].deadline = None
    with logs_to(LOG):
        run = bag.dags[dag_id].test(logical_date=logical)
    state = str(getattr(run.state, "value", run.state))
    ran = {ti.task_id: str(getattr(ti.state, "value", ti.state)) for ti in run.get_task_instances()}
    if set(ran) != set(bag.dags[dag_id].task_ids):
        # Airflow marks a run with no task instances (e.g. before start_date) as success.
        raise SystemExit(f"{dag_id} for {day}: tasks did not run: {set(bag.dags[dag_id].task_ids) - set(ran)}")
    say(
        f"    {dag_id} {day}: {state} in {time.monotonic() - started:.0f}s "
        f"({', '.join(f'{t} {s}' for t, s in ran.items() if s != 'success') or 'every task succeeded'})"
    )
    if state != "success":
        raise SystemExit(f"{dag_id} for {day} ended {state}; the task logs are in {LOG}")


LOG = Path(airflow_env.airflow_env()["AIRFLOW_HOME"]) / "demo.log"


def main() -> int:
    from pipeline.core.settings import load_config

    config = load_config()
    _step(f"Airflow metadata DB (SQLite) in {airflow_env.airflow_env()['AIRFLOW_HOME']}; task logs in {LOG}")
    with logs_to(LOG):
        subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], check=True)
        from airflow.dag_processing.dagbag import DagBag

        bag = DagBag(str(airflow_env.ROOT / "dags"))
    if bag.import_errors:
        raise SystemExit(f"DAG import errors: {bag.import_errors}")

    _step(f"training_pipeline as of {config.demo.train_as_of} (storage: {config.storage.root})")
    run_dag(bag, "training_pipeline", config.demo.train_as_of)
    for i, day in enumerate(config.demo.score_days, 1):
        _step(f"batch_scoring {day} ({i}/{len(config.demo.score_days)})")
        run_dag(bag, "batch_scoring", day)

    from pipeline.core import layout
    from pipeline.core.storage import open_storage
    from pipeline.data.data_docs import data_docs_index
    from pipeline.model import registry

    storage = open_storage(config.storage.root)
    version = registry.champion_version(storage, config.model_name)
    manifest = registry.read_manifest(storage, config.model_name, version)
    vkey = layout.model_version(config.model_name, version)
    metrics = manifest.get("metrics", {})
    _step("Done. Where things are:")
    say(f"    predictions   {storage.uri(f'predictions/{config.model_name}')}/dt=YYYY-MM-DD/*.parquet")
    for day in config.demo.score_days:
        m = storage.read_manifest(layout.predictions_partition(config.model_name, day))
        say(f"                  dt={day}: {m['row_count']} rows, model {m['model_version']}")
    say(
        f"    champion      {version}  (roc_auc {metrics.get('roc_auc', float('nan')):.3f}, "
        f"pr_auc {metrics.get('pr_auc', float('nan')):.3f})"
    )
    say(f"    model files   {storage.uri(vkey)}/ (model.joblib, manifest.json, gate.json)")
    say(f"    evaluation    {storage.uri(vkey + '/evaluation.html')}")
    say(f"    model card    {storage.uri(vkey + '/model_card.html')}")
    say(f"    data docs     {data_docs_index(config)}")
    say(f"    raw batches   {storage.uri(f'raw/{config.dataset.name}')}/")
    say(f"    contract      {storage.uri(f'contracts/{config.dataset.name}')}/  (python -m pipeline contract show)")
    say(f"    audit trail   {storage.uri('audit')}/  (python -m pipeline audit list | audit verify)")
    say(
        f"    DVC snapshot  md5 {manifest['data']['dvc'].get('md5', '-')} pushed to "
        f"{manifest['data']['dvc'].get('remote', '-')}  (python -m pipeline dvc-restore {version})"
    )
    say(f"    task logs     {LOG}")
    glob = f"{storage.uri(f'predictions/{config.model_name}')}/*/*.parquet"
    say("    try:")
    say(
        f'      .venv/bin/python -c "import duckdb; duckdb.sql(\\"select model_version, count(*) as n, '
        f"avg(score) as mean_score from '{glob}' group by 1\\\").show()\""
    )
    say("      make airflow-ui   # the same runs in the Airflow UI (http://127.0.0.1:8080)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
