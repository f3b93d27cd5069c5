"""The DAG files: they import cleanly, are wired as intended, and do no work at parse time."""

import itertools
import json
import subprocess
import sys

from conftest import ROOT, write_params

from pipeline.core.settings import load_config


def _edges(dag):
    return {(t.task_id, d) for t in dag.tasks for d in t.downstream_task_ids}


def test_no_import_errors(dagbag):
    assert dagbag.import_errors == {}
    assert {
        "training_pipeline",
        "batch_scoring",
        "drift_monitoring",
        "model_registry",
        "maintenance",
        "freshness",
        "scoring_on_arrival",
    } <= set(dagbag.dag_ids)


def test_training_pipeline_wiring(dagbag):
    dag = dagbag.get_dag("training_pipeline")
    chain = ["ingest", "validate", "snapshot", "train", "evaluate", "gate", "register"]
    assert _edges(dag) == set(itertools.pairwise(chain))
    assert set(dag.params.keys()) == {"as_of", "reason", "drift_decision"}
    assert "ml" in dag.tags and dag.doc_md and "Rerun" in dag.doc_md
    for t in dag.tasks:
        assert t.retries == 2 and t.retry_exponential_backoff and t.owner == "ml-platform"


def test_batch_scoring_wiring(dagbag):
    dag = dagbag.get_dag("batch_scoring")
    assert _edges(dag) == {
        ("ingest", "validate"),
        ("validate", "plan_scoring"),
        ("plan_scoring", "score_range"),
        ("score_range", "score"),
        ("plan_scoring", "score"),
    }
    from airflow.sdk.definitions.mappedoperator import MappedOperator

    assert isinstance(dag.get_task("score_range"), MappedOperator)  # one task per row-group range
    # date: another day than the logical one; model_version + reason: decide the day with another
    # version on purpose (the earlier decisions are kept as a revision).
    assert set(dag.params.keys()) == {"date", "model_version", "reason"}
    assert dag.max_active_runs >= 1 and dag.doc_md


def test_every_dag_can_be_triggered_with_its_defaults(dagbag):
    """The trigger form requires a string param whose default is empty and that does not allow null
    (seen in the UI: an optional `reason` blocked a plain manual run)."""
    for dag_id in (
        "batch_scoring",
        "training_pipeline",
        "drift_monitoring",
        "model_registry",
        "maintenance",
        "freshness",
        "scoring_on_arrival",
    ):
        for name, param in dagbag.get_dag(dag_id).params.items():
            schema = param.schema if hasattr(param, "schema") else {}
            types = schema.get("type") if isinstance(schema.get("type"), list) else [schema.get("type")]
            assert param.value not in ("", None) or "null" in types, f"{dag_id}.{name} would be required"


def test_scoring_on_arrival_wiring(dagbag, tmp_path, monkeypatch):
    """The demo's single-file source lands nothing new: the landing asset has no watcher. With one
    file per day it has the watcher, whose trigger polls at the configured interval."""
    from airflow.sdk.definitions.mappedoperator import MappedOperator

    from pipeline_airflow.arrival import DeliveryArrivedTrigger, landing_asset

    dag = dagbag.get_dag("scoring_on_arrival")
    assert _edges(dag) == {("days_landed", "start_scoring")}
    assert isinstance(dag.get_task("start_scoring"), MappedOperator) and set(dag.params.keys()) == {"date"}
    (asset,) = dag.timetable.asset_condition.objects
    assert asset.name == "credit_default_landing" and asset.watchers == []
    dataset = load_config().dataset.model_dump(mode="json")
    params = write_params(
        tmp_path,
        dataset={**dataset, "source": {"uri": str(tmp_path / "landing/dt={date}/*.csv"), "format": "csv"}},
        scoring={"arrival_poll_seconds": 7},
    )
    monkeypatch.setenv("PIPELINE_PARAMS", str(params))
    (watcher,) = landing_asset().watchers
    assert isinstance(watcher.trigger, DeliveryArrivedTrigger) and watcher.trigger.poll_seconds == 7


def test_freshness_wiring(dagbag):
    dag = dagbag.get_dag("freshness")
    assert [t.task_id for t in dag.tasks] == ["check_freshness"]
    assert set(dag.params.keys()) == {"date"} and "monitoring" in dag.tags
    assert "champion_max_age_days" in dag.doc_md and "python -m pipeline status" in dag.doc_md


def test_maintenance_wiring(dagbag):
    dag = dagbag.get_dag("maintenance")
    assert dag.task_ids == ["collect_garbage"] and set(dag.params.keys()) == {"older_than_hours", "dry_run"}
    assert "Never touches" in dag.doc_md and dag.max_active_runs == 1


def test_drift_monitoring_wiring(dagbag):
    dag = dagbag.get_dag("drift_monitoring")
    assert _edges(dag) == {
        ("monitor", "retraining_needed"),
        ("retraining_needed", "trigger_training"),
        ("monitor", "findings"),
    }
    assert set(dag.params.keys()) == {"as_of"}
    trigger = dag.get_task("trigger_training")
    assert trigger.trigger_dag_id == "training_pipeline"
    assert set(trigger.conf) == {"as_of", "reason", "drift_decision"}  # the training DAG's params
    assert set(trigger.conf) <= set(dagbag.get_dag("training_pipeline").params.keys())
    assert "monitoring" in dag.tags and "never on a data-quality break" in dag.doc_md


def test_parsing_does_no_pipeline_work():
    """Parsing the DAG folder must not import the heavy libraries or the pipeline's steps."""
    code = (
        "import sys, json\n"
        "from airflow.dag_processing.dagbag import DagBag\n"
        f"bag = DagBag({str(ROOT / 'dags')!r})\n"
        "heavy = [m for m in ('pipeline.steps', 'sklearn', 'great_expectations', 'dvc', 'pandas', 'boto3')"
        " if m in sys.modules]\n"
        "print(json.dumps({'errors': list(bag.import_errors), 'heavy': heavy, 'dags': sorted(bag.dag_ids)}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["errors"] == [] and result["dags"] == [
        "batch_scoring",
        "drift_monitoring",
        "freshness",
        "maintenance",
        "model_registry",
        "scoring_on_arrival",
        "training_pipeline",
    ]
    assert result["heavy"] == [], f"DAG parsing imported {result['heavy']}"
