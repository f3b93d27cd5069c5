"""The drift loop on the demo data: injected scenarios go through validation and scoring,
the monitor detects them, and the policy decides; the drift_monitoring DAG triggers
training_pipeline, whose new model records the reason. Plus the false-alarm rate."""

import datetime as dt
import json
import re
import shutil

import pandas as pd
import pytest
from conftest import ROOT, copy_trained
from helpers import read_parquet_objects, run_dag, task_states

from pipeline import steps
from pipeline.core import layout
from pipeline.core.errors import StaleData, ValidationFailed
from pipeline.core.settings import load_config
from pipeline.core.storage import open_storage
from pipeline.model import registry

pytestmark = pytest.mark.e2e

DRIFT_DAYS = ["2025-03-05", "2025-03-06", "2025-03-07"]
AS_OF = "2025-03-08"


@pytest.fixture(scope="module")
def trained_base(demo_champion, tmp_path_factory):
    """A champion trained as of 2025-03-01 on a short window, with its reference profile (the
    session's demo champion), monitored over 3-day windows."""
    base = tmp_path_factory.mktemp("drift_base")
    copy_trained(demo_champion, base, monitoring={"window_days": 3})
    return base


@pytest.fixture
def pipeline_copy(trained_base, tmp_path, monkeypatch):
    """A private copy of the trained storage and Data Context: scenarios never share decisions."""
    for name in ("storage", "great_expectations"):
        shutil.copytree(trained_base / name, tmp_path / name)
    text = (trained_base / "params.yaml").read_text().replace(str(trained_base), str(tmp_path))
    params = tmp_path / "params.yaml"
    params.write_text(text)
    monkeypatch.setenv("PIPELINE_PARAMS", str(params))
    config = load_config(params)
    return str(params), config, open_storage(config.storage.root)


def _deliver_and_score(params: str, days: list[str], scenario: str, **kwargs) -> dict:
    sim = steps.simulate(days, scenario, params=params, **kwargs)
    for day in days:
        steps.validate(day, params)
        steps.score(day, params)
    return sim


def _decision(storage, config, as_of=AS_OF) -> dict:
    return storage.read_json(layout.monitoring_decision(config.model_name, dt.date.fromisoformat(as_of)))


def test_covariate_shift_triggers_retraining_through_airflow(dagbag, pipeline_copy):
    params, config, storage = pipeline_copy
    champion = registry.champion_version(storage, config.model_name)
    profile = storage.read_json(f"{layout.model_version(config.model_name, champion)}/reference_profile.json")
    sim = _deliver_and_score(params, DRIFT_DAYS, "covariate_shift")
    assert sim["column"] == next(
        f
        for f in profile["important_features"]
        if f in profile["columns"] and profile["columns"][f]["kind"] == "numeric"
    )

    assert run_dag(dagbag, "drift_monitoring", AS_OF) == "success"
    assert task_states(dagbag, "drift_monitoring")["trigger_training"] == "success"
    decision = _decision(storage, config)
    assert decision["retrain"] is True and sim["column"] in decision["drifted_important_features"]
    # Label-less: labels lag 14 days, so a retraining now cannot hold the drifted week, and says so.
    assert decision["drift_coverage"]["labelled_days"] == 0 and decision["label_backed"] is False
    assert decision["drift_coverage"]["drift_period"] == ["2025-03-05", "2025-03-07"]  # the 3-day window
    assert "Label-less drift: the drift covers 2025-03-05..2025-03-07" in decision["reason"]
    assert decision["prediction_drift"] is True and decision["quality_breaks"] == []

    # Statistics for dashboards: one row per feature x statistic (+ the score), readable as Parquet.
    stats = pd.read_parquet(f"{decision['statistics']}/part-00000.parquet")
    drift = stats[stats.category == "drift"]
    numeric = [c for c, v in profile["columns"].items() if v["kind"] == "numeric"]
    assert len(drift) == 3 * len(numeric) + 2 * (len(profile["columns"]) - len(numeric))
    assert set(stats[stats.category == "prediction_drift"].statistic) == {"psi", "ks", "wasserstein"}
    assert drift[drift.calibrated_flag].feature.tolist() == [sim["column"]]
    report = storage.read_bytes(layout.monitoring_report(config.model_name, dt.date.fromisoformat(AS_OF))).decode()
    assert "retraining: drift in important feature" in report and "data:image/png;base64" in report
    assert not re.search(r"<(script|link)[^>]+(src|href)=", report)  # self-contained, readable offline

    # The triggered run carries as_of and the reason; running it records the reason in the new model.
    from airflow.models import DagRun
    from airflow.utils.session import create_session

    with create_session() as session:
        run = (
            session.query(DagRun)
            .filter(DagRun.dag_id == "training_pipeline", DagRun.run_id == f"drift_retrain__{AS_OF}")
            .one()
        )
        logical_date, conf = run.logical_date, dict(run.conf)
    assert conf["as_of"] == AS_OF and "drift in important feature" in conf["reason"]
    # A private DagBag: dag.test(run_conf=...) leaves the conf in the DAG object's params, which
    # would leak into later tests sharing the session's DagBag.
    from airflow.dag_processing.dagbag import DagBag

    run = DagBag(str(ROOT / "dags")).get_dag("training_pipeline").test(logical_date=logical_date, run_conf=conf)
    assert str(getattr(run.state, "value", run.state)) == "success"
    new = [m for m in registry.list_versions(storage, config.model_name) if m["version"] != champion]
    assert len(new) == 1 and new[0]["reason"] == conf["reason"] and new[0]["trained_as_of"] == AS_OF
    # The new model records what triggered it and that its window ends before the drifted days.
    trigger = new[0]["trigger"]
    assert conf["drift_decision"] == AS_OF and trigger["as_of"] == AS_OF
    coverage = decision["drift_coverage"]
    assert trigger["drift_period"] == coverage["drift_period"] and trigger["labelled_drift_days"] == 0
    assert trigger["training_window"][1] == coverage["training_window_ends"] < coverage["drift_period"][0]
    assert trigger["drift_inside_training_window"] is False
    assert f"window ends {coverage['training_window_ends']} and holds none of them" in new[0]["reason"]
    assert storage.exists(f"{layout.model_version(config.model_name, new[0]['version'])}/reference_profile.json")


def test_category_mix_is_detected(pipeline_copy):
    params, config, storage = pipeline_copy
    sim = _deliver_and_score(params, DRIFT_DAYS, "category_mix")
    result = steps.monitor_drift(AS_OF, params)
    assert sim["column"] in result["drifted_features"]
    decision = _decision(storage, config)
    assert decision["quality_breaks"] == []
    # Retraining only if the drifted category is an important feature.
    assert decision["retrain"] == (sim["column"] in decision["important_features"])


def test_correlation_break_is_seen_only_by_the_multivariate_statistic(pipeline_copy):
    """Every numeric column shuffled on its own: each keeps its distribution (no per-column flag),
    how they move together is gone; the PCA reconstruction error flags it and the policy retrains."""
    params, config, storage = pipeline_copy
    sim = _deliver_and_score(params, DRIFT_DAYS, "correlation_break")
    assert sim["column"].split(",") == profile_columns_of_kind(storage, config, "numeric")
    result = steps.monitor_drift(AS_OF, params)
    decision = _decision(storage, config)
    assert decision["drifted_features"] == [] and decision["quality_breaks"] == []
    joint = decision["multivariate_drift"]
    assert joint["flagged"] and joint["increase"] >= 0.2 and joint["calibrated_pvalue"] < 0.01
    assert result["retrain"] is True and "multivariate drift (PCA reconstruction error" in result["reason"]
    assert joint["drivers"] and all(d["feature"] in sim["column"].split(",") for d in joint["drivers"])
    stats = pd.read_parquet(f"{decision['statistics']}/part-00000.parquet")
    row = stats[stats.category == "multivariate_drift"].iloc[0]
    assert row.statistic == "reconstruction_error" and row.calibrated_flag and row.value > row.reference_value
    report = storage.read_bytes(layout.monitoring_report(config.model_name, dt.date.fromisoformat(AS_OF))).decode()
    assert "Multivariate drift (PCA reconstruction error)" in report and joint["drivers"][0]["feature"] in report


def profile_columns_of_kind(storage, config, kind):
    return [c for c, v in profile_columns(storage, config).items() if v["kind"] == kind]


def test_concept_drift_retrains_once_labels_arrive(pipeline_copy):
    params, config, storage = pipeline_copy
    _deliver_and_score(params, DRIFT_DAYS, "concept_drift")
    before = steps.monitor_drift(AS_OF, params)
    assert before["retrain"] is False and before["drifted_features"] == []  # features did not change
    assert _decision(storage, config)["realized"] is None  # labels due 14 days later

    # Two weeks on: the drifted days' labels have arrived; the recent days are ordinary.
    later = ["2025-03-19", "2025-03-20", "2025-03-21"]
    _deliver_and_score(params, later, "none")
    after = steps.monitor_drift("2025-03-22", params)
    decision = _decision(storage, config, "2025-03-22")
    assert after["retrain"] is True and "realized roc_auc" in after["reason"]
    assert decision["realized"]["rows"] >= 500 and decision["realized"]["roc_auc"] < 0.65
    assert decision["estimated"]["roc_auc"] > 0.7  # CBPE cannot see concept drift: labels can
    # Per ISO week too (pooled rows), realized where labels arrived and estimated everywhere.
    week = decision["performance_by_week"]["2025-W10"]
    assert week["labelled_days"] == 3 and week["realized"]["roc_auc"] < 0.65 and week["estimated"]["roc_auc"] > 0.7
    stats = pd.read_parquet(f"{decision['statistics']}/part-00000.parquet")
    assert {"week 2025-W10", "day 2025-03-05"} <= set(stats[stats.category == "performance_realized"].feature)


def test_segment_whose_tpr_drops_is_alerted_while_the_global_auc_holds(pipeline_copy):
    """One group's defaulters start to look like its non-defaulters: labels unchanged, the model
    misses them. Once their labels arrive the segment report names the group, its TPR against
    training and the binomial evidence; the global AUC stays above its floor, so only the segment
    alerts (retrain_on_segment_breach is off)."""
    params, config, storage = pipeline_copy
    sim = _deliver_and_score(params, DRIFT_DAYS, "segment_shift")
    column, _, group = sim["column"].partition("=")
    assert column in config.dataset.sensitive_attributes
    _deliver_and_score(params, ["2025-03-19", "2025-03-20", "2025-03-21"], "none")
    result = steps.monitor_drift("2025-03-22", params)
    decision = _decision(storage, config, "2025-03-22")
    assert decision["realized"]["roc_auc"] >= 0.70 and decision["realized"]["rows"] >= 500
    assert result["retrain"] is False and "segment breach" in result["reason"]
    breaches = decision["segments"]["breaches"]
    assert any(b.startswith(f"segment {column}={group} week 2025-W10: TPR") for b in breaches), breaches
    assert any(a.startswith(f"segment breach: segment {column}={group}") for a in decision["alerts"])
    week = decision["segments"]["columns"][column]["weeks"]["2025-W10"]
    hit = next(g for g in week["groups"] if g["group"] == group)
    assert hit["tpr_drop"] > 0.15 and hit["tpr_pvalue"] < 0.05 / len(week["groups"])
    # Small groups are reported as such, never dropped.
    marriage = decision["segments"]["columns"]["MARRIAGE"]["weeks"]["2025-W10"]["groups"]
    assert any(g["too_small"] for g in marriage) and all("tpr" in g for g in marriage)
    stats = pd.read_parquet(f"{decision['statistics']}/part-00000.parquet")
    realized = stats[(stats.category == "segment_realized") & (stats.statistic == "tpr")]
    assert f"{column}={group} week 2025-W10" in set(realized.feature)
    report = storage.read_bytes(layout.monitoring_report(config.model_name, dt.date(2025, 3, 22))).decode()
    assert "Segments: performance and fairness by group" in report and "TPR at training" in report


def test_labels_that_stop_arriving_raise_a_freshness_alert(pipeline_copy):
    """Deliveries keep coming, their labels stop (those already stored for the days are withdrawn):
    once they are overdue by more than label_tolerance_days the freshness check names the labels
    zone, and only it."""
    params, config, storage = pipeline_copy
    labels = [layout.labels_partition(config.dataset.name, dt.date.fromisoformat(d)) for d in DRIFT_DAYS]
    steps.simulate(DRIFT_DAYS, "none", params=params)
    assert all(storage.partition_exists(key) for key in labels)
    sim = steps.simulate(DRIFT_DAYS, "labels_stop", params=params)
    assert [d["labels"] for d in sim["days"]] == [None] * 3
    assert not any(storage.partition_exists(key) for key in labels)
    assert all(d["staged"] and d["rows"] > 0 for d in sim["days"])  # the features still arrive
    later = ["2025-03-19", "2025-03-20", "2025-03-21"]
    _deliver_and_score(params, later, "labels_stop")
    steps.monitor_drift("2025-03-22", params)  # the weekly run is on time; only the labels are not
    decision = _decision(storage, config, "2025-03-22")
    assert decision["newest_labelled_day"] < DRIFT_DAYS[0]
    report = storage.read_bytes(layout.monitoring_report(config.model_name, dt.date(2025, 3, 22))).decode()
    assert (
        f"labels are due for days up to 2025-03-08; the newest labelled day is {decision['newest_labelled_day']}; "
        "labels are late: see the freshness check" in report
    )

    status = steps.status("2025-03-22", params)
    assert status["late"] == ["labels"], status
    row = next(z for z in status["zones"] if z["zone"] == "labels")
    assert row["latest"] < DRIFT_DAYS[0] and row["expected"] == "2025-03-08"
    assert f"{row['days_behind']} day(s) behind 2025-03-08 (limit 2)" == row["why"]
    with pytest.raises(StaleData, match=r"1 zone\(s\) late as of 2025-03-22: labels: ") as err:
        steps.check_freshness("2025-03-22", params)
    assert err.value.kind == "freshness" and "labels" in err.value.links


def test_data_break_alerts_and_does_not_retrain(pipeline_copy):
    params, config, storage = pipeline_copy
    sim = steps.simulate(DRIFT_DAYS, "data_break", params=params)
    for day in DRIFT_DAYS:
        with pytest.raises(ValidationFailed):
            steps.validate(day, params)
    result = steps.monitor_drift(AS_OF, params)
    decision = _decision(storage, config)
    assert result["retrain"] is False and "data-quality break" in result["reason"]
    assert any("3 quarantined deliveries" in a for a in decision["alerts"])
    assert [d["status"] for d in decision["days"]] == ["quarantined"] * 3
    assert sim["column"] in profile_columns(storage, config)


def profile_columns(storage, config):
    version = registry.champion_version(storage, config.model_name)
    return storage.read_json(f"{layout.model_version(config.model_name, version)}/reference_profile.json")["columns"]


def test_unit_change_that_passes_validation_is_a_quality_break(pipeline_copy):
    params, config, storage = pipeline_copy
    # BILL_AMT1 has no configured range, so validation lets x1000 values through.
    _deliver_and_score(params, DRIFT_DAYS, "data_break", column="BILL_AMT1", break_kind="unit")
    result = steps.monitor_drift(AS_OF, params)
    decision = _decision(storage, config)
    assert result["retrain"] is False
    assert any("BILL_AMT1" in b and "unit change" in b for b in decision["quality_breaks"])


def test_a_week_without_drift_does_not_retrain(pipeline_copy):
    params, config, storage = pipeline_copy
    _deliver_and_score(params, DRIFT_DAYS, "none")
    result = steps.monitor_drift(AS_OF, params)
    assert result["retrain"] is False and result["quality_breaks"] == 0
    # Attribution is measured on the window (label-free) and, in a quiet week, moves within its floor.
    moved = _decision(storage, config)["attribution_drift"]
    assert (
        moved["rows"] > 500
        and moved["flagged"] == []
        and len(moved["features"]) == len(profile_columns(storage, config))
    )
    assert all(r["distance"] < 5 for r in moved["features"])
    # A rerun replaces the run's outputs and reuses the cached noise floors.
    again = steps.monitor_drift(AS_OF, params)
    assert again["reason"] == result["reason"]
    assert len(storage.list_keys(layout.monitoring_decisions(config.model_name))) == 1
    assert storage.list_keys(f"monitoring/{config.model_name}/calibration")


def test_false_alarm_rate_over_60_weeks(pipeline_copy, tmp_path):
    params, config, storage = pipeline_copy
    result = steps.false_alarms(60, params)
    (tmp_path / "false_alarms.json").write_text(json.dumps(result, indent=2))
    print(
        "\nfalse alarms over 60 weeks without drift:",
        json.dumps(result["retrain_rate"]),
        "weeks with any flagged feature:",
        json.dumps(result["weeks_with_any_flagged_feature"]),
        "weeks with alerts:",
        json.dumps(result["weeks_with_alerts"]),
        "with a segment breach:",
        result["weeks_with_segment_breach"],
        "with an attribution flag:",
        result["weeks_with_attribution_flag"],
    )
    assert result["weeks"] == 60
    assert result["retrains"]["calibrated"] == 0  # no alert fatigue: not one retraining in 60 quiet weeks
    assert result["weeks_with_multivariate_flag"] <= 1
    assert result["weeks_with_alerts"]["calibrated"] <= 1  # segments and quality page no one on quiet weeks
    assert result["weeks_with_attribution_flag"] <= 3  # of 60: 24 features a week, each at 5 noise sd
    # The fixed-threshold view flags far more often (that is what calibration is for).
    assert result["weeks_with_any_flagged_feature"]["fixed"] > result["weeks_with_any_flagged_feature"]["calibrated"]


def test_model_card_gathers_every_section_from_storage(pipeline_copy):
    """The champion's card after a monitoring run and a human approval: every Annex IV section is
    filled from what storage holds, nothing is left at its placeholder, and no row's values appear."""
    from pipeline.model import card

    params, config, storage = pipeline_copy
    version = registry.champion_version(storage, config.model_name)
    _deliver_and_score(params, DRIFT_DAYS, "none")
    steps.monitor_drift(AS_OF, params)
    response = {"chosen_options": ["Approve"], "responded_by_user": {"name": "risk-officer"}}
    steps.record_approval(version, {**response, "params_input": {"reason": "reviewed the card"}}, params=params)
    written = steps.model_card(params=params)
    sections = dict(card.gather(config, storage, version))
    assert list(sections) == written["sections"] and len(sections) == 9
    listed = {v["version"]: v["model_card"] for v in steps.registry_action("list", params=params)["versions"]}
    assert listed[version] == written["html"]  # `models list` links every version's card
    text = storage.read_bytes(f"{layout.model_version(config.model_name, version)}/{card.MARKDOWN}").decode()
    page = storage.read_bytes(f"{layout.model_version(config.model_name, version)}/{card.HTML}").decode()
    for heading, rows in sections.items():
        assert rows and heading in text and heading in page
        for label, value in rows:
            assert value not in (None, "", [], card.NONE_YET), f"{heading} / {label} is empty"
    assert "not stated in params" not in text and "not monitored while serving yet" not in text
    assert "approved by risk-officer" in text and "reviewed the card" in text
    assert AS_OF in dict(sections["9. Post-deployment monitoring"])
    performance = dict(sections["3. Performance (holdout)"])
    low, high = (float(x) for x in performance["roc_auc"].split("[")[1].rstrip("]").split(","))
    assert low < float(performance["roc_auc"].split(" ")[0]) < high
    # Aggregates only: no id of a scored row appears in the card.
    ids = set(
        read_parquet_objects(
            storage, layout.predictions_partition(config.model_name, dt.date.fromisoformat(DRIFT_DAYS[0]))
        )["ID"].astype(str)
    )
    assert not {i for i in ids if len(i) >= 4 and f" {i} " in f" {text} "}


def test_status_shows_each_zone_and_what_is_late(pipeline_copy, capsys):
    from pipeline.cli import main

    params, config, storage = pipeline_copy
    _deliver_and_score(params, ["2025-03-06"], "none")
    result = steps.status(AS_OF, params)
    zones = {z["zone"].split()[0]: z for z in result["zones"]}
    assert list(zones) == ["raw", "labels", "predictions", "champion", "drift"]
    champion = registry.champion_version(storage, config.model_name)
    assert zones["champion"]["zone"] == f"champion {champion}" and zones["champion"]["late"] is False
    assert zones["predictions"]["latest"] == zones["raw"]["latest"] == "2025-03-06"
    assert zones["predictions"]["days_behind"] == 2 and zones["predictions"]["late"] is False
    assert zones["drift"]["latest"] is None and zones["drift"]["late"] is True  # never monitored yet
    assert zones["drift"]["why"] == "nothing published yet" and "drift monitoring" in result["late"]
    # Months later every zone is behind, each saying by how much against its limit.
    later = {z["zone"].split()[0]: z for z in steps.status("2025-09-01", params)["zones"]}
    assert all(z["late"] for z in later.values())
    assert later["champion"]["days_behind"] > config.monitoring.freshness.champion_max_age_days
    assert f"(limit {config.monitoring.freshness.raw_max_age_days})" in later["raw"]["why"]
    # The CLI prints the table and exits 1 when something is late (for cron and health checks).
    assert main(["--params", params, "status", "--date", AS_OF]) == 1
    out = capsys.readouterr()
    assert "Freshness as of 2025-03-08" in out.out and "LATE" in out.out and "late: drift monitoring" in out.err
