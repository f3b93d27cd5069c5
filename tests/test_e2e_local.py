"""Both DAGs end to end with dag.test() on local storage (the embedded default)."""

import datetime as dt

import duckdb
import pytest
import yaml
from helpers import run_dag, task_states

from pipeline import steps
from pipeline.core import layout
from pipeline.core.settings import load_config
from pipeline.core.storage import open_storage
from pipeline.model import registry

pytestmark = pytest.mark.e2e


def test_training_then_scoring_through_airflow(dagbag, small_params, tmp_path):
    config = load_config(small_params)
    storage = open_storage(config.storage.root)

    assert run_dag(dagbag, "training_pipeline", "2025-03-01") == "success"
    assert task_states(dagbag, "training_pipeline")["register"] == "success"
    version = registry.champion_version(storage, "credit_default")
    manifest = registry.read_manifest(storage, "credit_default", version)
    # The champion is visible in Airflow: an event of the `credit_default_champion` asset.
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session

    with create_session() as session:
        event = (
            session.query(AssetEvent)
            .join(AssetModel, AssetEvent.asset_id == AssetModel.id)
            .filter(AssetModel.name == "credit_default_champion")
            .order_by(AssetEvent.id.desc())
            .first()
        )
        assert event is not None and event.extra["version"] == version
        assert event.extra["metrics"]["roc_auc"] > 0.7
    # Traceable: data version (snapshot + DVC md5), params, code, metrics.
    # DVC: versioned in a workspace of its own and pushed; the project checkout is not touched.
    recorded = manifest["data"]["dvc"]
    dvc_file = yaml.safe_load(recorded["dvc_file_content"])
    assert recorded["md5"] == dvc_file["outs"][0]["md5"] and recorded["pushed"] is True
    md5 = recorded["md5"]
    assert (tmp_path / "dvc_remote" / "files" / "md5" / md5[:2] / md5[2:]).exists(), "snapshot not pushed"
    assert not (tmp_path / "dvc_repo" / "data.dvc").exists() and not (tmp_path / "dvc_repo" / "data").exists()
    assert manifest["params"]["training"]["window_days"] == 20
    assert manifest["code_revision"] and manifest["metrics"]["roc_auc"] > 0.7
    assert storage.exists(f"{layout.model_version('credit_default', version)}/evaluation.html")
    assert storage.read_json(f"{layout.model_version('credit_default', version)}/gate.json")["passed"]

    for day in ("2025-03-02", "2025-03-03"):
        assert run_dag(dagbag, "batch_scoring", day) == "success"
    assert run_dag(dagbag, "batch_scoring", "2025-03-02") == "success"  # a rerun replaces, never appends

    glob = f"{config.storage.root}/predictions/credit_default/*/*.parquet"
    con = duckdb.connect()
    columns = [
        r[0] for r in con.execute(f"describe select * from read_parquet('{glob}', hive_partitioning=true)").fetchall()
    ]
    assert columns[:5] == ["ID", "score", "prediction", "model_version", "scored_at"]
    per_day = dict(
        con.execute(
            f"select dt::varchar, count(*) from read_parquet('{glob}', hive_partitioning=true) group by 1"
        ).fetchall()
    )
    for day in ("2025-03-02", "2025-03-03"):
        raw_rows = storage.read_manifest(layout.raw_partition("credit_default", dt.date.fromisoformat(day)))[
            "row_count"
        ]
        assert per_day[day] == raw_rows  # one prediction per input row, no duplicates after the rerun
        # Rows explain themselves: the threshold that decided them and the raw partition they came from.
        raw_publish = storage.read_manifest(layout.raw_partition("credit_default", dt.date.fromisoformat(day)))
        scored = storage.read_manifest(layout.predictions_partition("credit_default", dt.date.fromisoformat(day)))
        got = con.execute(
            f"select distinct threshold, input_publish_id from read_parquet('{glob}', hive_partitioning=true) "
            f"where dt = '{day}'"
        ).fetchall()
        assert got == [(scored["threshold"], raw_publish["publish_id"])]
    versions = con.execute(f"select distinct model_version from read_parquet('{glob}')").fetchall()
    assert versions == [(version,)]
    ids = con.execute(f"select count(*), count(distinct ID) from read_parquet('{glob}')").fetchone()
    assert ids[0] == ids[1]
    bounds = con.execute(
        f"select min(score), max(score), min(prediction), max(prediction), max(scored_at) from read_parquet('{glob}')"
    ).fetchone()
    assert 0 <= bounds[0] <= bounds[1] <= 1 and {bounds[2], bounds[3]} <= {0, 1}
    assert bounds[4].utcoffset().total_seconds() == 0  # timestamptz in UTC, readable from Python
    # The analysts' recursive glob over the whole tree sees exactly the committed files.
    total = con.execute(f"select count(*) from '{config.storage.root}/predictions/**/*.parquet'").fetchone()[0]
    assert total == sum(per_day.values())


def test_rejected_candidate_is_not_promoted(dagbag, tmp_path, monkeypatch):
    from conftest import write_params

    params = write_params(
        tmp_path,
        training={"window_days": 20, "holdout_days": 5, "cv_folds": 3, "estimator_params": {"max_iter": 20}},
        gate={"min_metrics": {"roc_auc": 0.99}},
    )
    monkeypatch.setenv("PIPELINE_PARAMS", str(params))
    assert run_dag(dagbag, "training_pipeline", "2025-03-01") == "success"
    states = task_states(dagbag, "training_pipeline")
    assert states["gate"] == "success" and states["register"] == "skipped"
    storage = open_storage(load_config(params).storage.root)
    (version,) = [m["version"] for m in registry.list_versions(storage, "credit_default")]
    gate = storage.read_json(f"{layout.model_version('credit_default', version)}/gate.json")
    assert not gate["passed"] and gate["reasons"][0].startswith("roc_auc")
    assert registry.get_alias(storage, "credit_default") is None
    # On-call is told (register's on_skipped_callback), and the decision is in the audit trail.
    (notice,) = steps.audit_list(kind="alert", params=str(params))
    assert notice["failure_kind"] == "gate_rejection" and notice["task_id"] == "register"
    assert "gate rejected" in notice["why"] and "Gate rejection" in notice["runbook"]
    (decision,) = steps.audit_list(kind="gate", params=str(params))
    assert decision["passed"] is False


def test_bad_batch_through_the_scoring_dag(dagbag, tmp_path, monkeypatch):
    """A day whose source rows break the suite: validate fails, batch quarantined, nothing scored."""
    import gzip

    import pandas as pd
    from conftest import ROOT, write_params

    from pipeline.data.source import assign_days, read_source_text

    base = load_config(ROOT / "params.yaml")
    text = pd.read_csv(ROOT / "sources/credit_default/UCI_Credit_Card.csv.gz", dtype=str, keep_default_na=False)
    days = assign_days(base.dataset, read_source_text(base.dataset))
    on_day = (days == dt.date(2025, 3, 5)).to_numpy()
    text.loc[on_day, "AGE"] = "250"
    bad_source = tmp_path / "bad.csv.gz"
    with gzip.open(bad_source, "wt") as fh:
        text.to_csv(fh, index=False)
    params = write_params(
        tmp_path,
        dataset={
            **yaml.safe_load((ROOT / "params.yaml").read_text())["dataset"],
            "source": {"uri": str(bad_source), "format": "csv"},
        },
    )
    monkeypatch.setenv("PIPELINE_PARAMS", str(params))
    assert run_dag(dagbag, "batch_scoring", "2025-03-05") == "failed"
    states = task_states(dagbag, "batch_scoring")
    assert states["ingest"] == "success" and states["validate"] == "failed"
    assert states["score"] == "upstream_failed"
    storage = open_storage(load_config(params).storage.root)
    day = dt.date(2025, 3, 5)
    record = storage.read_json(layout.validation_record("credit_default", day))
    assert [f["column"] for f in record["failed_expectations"]] == ["AGE"]
    assert record["quarantine"].startswith(storage.uri(layout.quarantine_day("credit_default", day)))
    (quarantined,) = steps.quarantine_list(params=str(params))
    assert quarantined["stage"] == "validate" and "column=AGE" in quarantined["reasons"][0]
    assert not storage.partition_exists(layout.raw_partition("credit_default", day))
    assert not storage.list_keys("predictions")
