"""Running DAGs with dag.test() and reading what they wrote."""

from __future__ import annotations

import datetime as dt
import io

import pandas as pd
import pendulum
import pyarrow.parquet as pq


def run_dag(dagbag, dag_id: str, day: str | dt.date) -> str:
    """Run with dag.test(); the run's state, after checking every task really ran
    (Airflow marks a run with no task instances, e.g. before start_date, as success)."""
    day = dt.date.fromisoformat(str(day))
    dag = dagbag.get_dag(dag_id)
    # Airflow 3.3.2's dag.test() crashes when it finishes a successful run of a DAG with a
    # DeadlineAlert (it looks the alerts up by id, which only a serialized DAG has). Deadlines are
    # the scheduler's business; tests/test_alerts.py proves them through the real scheduler.
    dag.deadline = None
    run = dag.test(logical_date=pendulum.datetime(day.year, day.month, day.day, tz="UTC"))
    states = task_states(dagbag, dag_id)
    assert set(states) == set(dag.task_ids), (
        f"{dag_id} {day}: tasks that did not run: {set(dag.task_ids) - set(states)}"
    )
    return str(getattr(run.state, "value", run.state))


def task_states(dagbag, dag_id: str) -> dict[str, str]:
    from airflow.models import DagRun, TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        run = session.query(DagRun).filter(DagRun.dag_id == dag_id).order_by(DagRun.id.desc()).first()
        tis = session.query(TaskInstance).filter(TaskInstance.dag_id == dag_id, TaskInstance.run_id == run.run_id).all()
        return {ti.task_id: str(getattr(ti.state, "value", ti.state)) for ti in tis}


def read_parquet_objects(storage, prefix: str) -> pd.DataFrame:
    """Every Parquet file under a prefix, as an analyst's glob would see them."""
    frames = [
        pq.read_table(io.BytesIO(storage.read_bytes(k))).to_pandas()
        for k in storage.list_keys(prefix)
        if k.endswith(".parquet")
    ]
    return pd.concat(frames, ignore_index=True)


def demo_day_frames():
    """The demo source's rows (as text) and the day each is delivered on (ISO strings), as ingestion assigns them."""
    from conftest import ROOT

    from pipeline.core.settings import load_config
    from pipeline.data.source import assign_days, read_source_text

    config = load_config(ROOT / "params.yaml")
    raw = pd.read_csv(ROOT / "sources/credit_default/UCI_Credit_Card.csv.gz", dtype=str, keep_default_na=False)
    days = assign_days(config.dataset, read_source_text(config.dataset)).map(lambda d: d.isoformat()).to_numpy()
    return raw, days


def land_delivery(landing, day: str, frame) -> None:
    """Deliver `frame` as `landing/dt=<day>/delivery.csv`, appearing at once (written aside, then renamed)."""
    target = landing / f"dt={day}"
    target.mkdir(parents=True, exist_ok=True)
    frame.to_csv(target / ".delivery.csv.part", index=False)
    (target / ".delivery.csv.part").rename(target / "delivery.csv")
