"""Trustworthy promotion: champion vs challenger on the same holdout, cost, fairness, registry
aliases with history, rollback, concurrent promotions on S3, shadow and canary scoring, and
human approval in the training DAG."""

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import threading
import time

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import ROOT, SMALL_TRAINING, copy_trained, write_params
from helpers import read_parquet_objects, task_states

from pipeline import steps
from pipeline.core import layout
from pipeline.core.settings import load_config
from pipeline.core.storage import open_storage
from pipeline.model import registry

pytestmark = pytest.mark.e2e

SMALL = SMALL_TRAINING


def _train(as_of: str, params: str, reason: str) -> str:
    """A candidate version as of `as_of` (window ingested and validated first), not registered."""
    steps.ingest_window(as_of, params)
    steps.validate_window(as_of, params)
    return steps.train(as_of, steps.snapshot(as_of, params), reason, params)["version"]


@pytest.fixture(scope="module")
def two_versions(demo_champion, tmp_path_factory):
    """Champion trained as of 2025-03-01 (the session's demo champion); a candidate as of
    2025-03-12 (evaluated against it, not registered). Its holdout (2025-02-22 .. 02-26) is after
    the champion's training days."""
    base = tmp_path_factory.mktemp("promotion")
    params = str(copy_trained(demo_champion, base))
    config = load_config(params)
    assert config.training.window_days == SMALL["window_days"]
    champion = registry.champion_version(open_storage(config.storage.root), config.model_name)
    candidate = _train("2025-03-12", params, "test candidate")
    steps.evaluate(candidate, params)
    steps.gate(candidate, params)
    return {"base": base, "params": params, "champion": champion, "candidate": candidate}


@pytest.fixture
def copy_of(two_versions, tmp_path, monkeypatch):
    """A private copy of the two-version storage: each test moves aliases on its own."""
    base = two_versions["base"]
    for name in ("storage", "great_expectations"):
        shutil.copytree(base / name, tmp_path / name)
    params = tmp_path / "params.yaml"
    params.write_text((base / "params.yaml").read_text().replace(str(base), str(tmp_path)))
    monkeypatch.setenv("PIPELINE_PARAMS", str(params))
    config = load_config(params)
    return {
        **two_versions,
        "params": str(params),
        "config": config,
        "storage": open_storage(config.storage.root),
        "dir": tmp_path,
    }


def _params_with(copy: dict, name: str, **sections) -> str:
    data = yaml.safe_load(open(copy["params"]))
    for section, values in sections.items():
        data[section] = {**(data.get(section) or {}), **values}
    path = copy["dir"] / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return str(path)


def _gate(storage, version):
    return storage.read_json(f"{layout.model_version('credit_default', version)}/gate.json")


def test_candidate_is_compared_with_the_champion_on_the_same_holdout(copy_of):
    gate = _gate(copy_of["storage"], copy_of["candidate"])
    comparison = gate["comparison"]
    assert comparison["possible"] and comparison["champion_version"] == copy_of["champion"]
    boot = comparison["bootstrap"]
    assert boot["resamples"] >= 990 and boot["metric"] == "roc_auc" and boot["seed"] == 42
    assert boot["difference_ci"][0] <= boot["difference"] <= boot["difference_ci"][1]
    assert gate["passed"] == (
        boot["difference_ci"][0] >= -0.005
        and comparison["candidate_cost_per_1000"] <= comparison["champion_cost_per_1000"]
        and not gate["reasons"]
    )
    report = (
        copy_of["storage"]
        .read_bytes(f"{layout.model_version('credit_default', copy_of['candidate'])}/evaluation.html")
        .decode()
    )
    assert report.count("Gate PASSED") + report.count("Gate FAILED") == 1
    steps.gate(copy_of["candidate"], copy_of["params"])  # re-gating replaces the verdict, never stacks it
    report = (
        copy_of["storage"]
        .read_bytes(f"{layout.model_version('credit_default', copy_of['candidate'])}/evaluation.html")
        .decode()
    )
    assert report.count("Gate PASSED") + report.count("Gate FAILED") == 1
    for section in ("Candidate vs champion", "Cost of errors", "Fairness by group", "permutation importance"):
        assert section in report
    assert "<script" not in report and "<link" not in report  # readable offline


def test_a_champion_that_trained_on_the_holdout_is_not_compared(copy_of):
    # The champion (as of 03-01) trained on 01-27 .. 02-10; a candidate as of 02-26 holds out 02-08 .. 02-12.
    version = _train("2025-02-26", copy_of["params"], "overlap")
    steps.evaluate(version, copy_of["params"])
    gate = steps.gate(version, copy_of["params"])
    decision = _gate(copy_of["storage"], version)
    assert decision["comparison"]["possible"] is False
    assert "trained on 3 of the holdout days (2025-02-08 .. 2025-02-10)" in decision["comparison"]["reason"]
    assert any("not compared with a champion" in n for n in decision["notes"])
    assert gate["passed"] == (not decision["reasons"])


def test_shuffled_labels_candidate_is_never_promoted(copy_of, monkeypatch):
    import pipeline.model.train as train_module

    real = train_module.target_vector
    monkeypatch.setattr(
        train_module,
        "target_vector",
        lambda labels, positive: np.random.default_rng(0).permutation(real(labels, positive)),
    )
    version = _train("2025-03-19", copy_of["params"], "shuffled labels")  # a new version id
    monkeypatch.setattr(train_module, "target_vector", real)
    steps.evaluate(version, copy_of["params"])
    gate = steps.gate(version, copy_of["params"])
    assert gate["passed"] is False
    assert any("roc_auc" in r and "below the floor" in r for r in gate["reasons"])
    assert any("lower bound is below the required" in r for r in gate["reasons"])
    assert steps.register(version, params=copy_of["params"])["promoted"] is False
    with pytest.raises(registry.RegistryError, match="failed its gate"):
        steps.registry_action("promote", version, "try anyway", params=copy_of["params"])
    assert registry.champion_version(copy_of["storage"], "credit_default") == copy_of["champion"]


def test_a_version_is_not_promoted_over_itself(copy_of):
    champion = copy_of["champion"]
    steps.evaluate(champion, copy_of["params"])
    gate = steps.gate(champion, copy_of["params"])
    assert gate["passed"] is False and any("already the champion" in r for r in gate["reasons"])
    with pytest.raises(registry.RegistryError, match="already the champion"):
        registry.promote(copy_of["storage"], "credit_default", champion, "again", force=True)
    refused = [h for h in registry.history(copy_of["storage"], "credit_default") if h["outcome"] == "refused"]
    assert refused and refused[-1]["refused_because"] == f"{champion} is already the champion"


def test_fairness_limit_blocks_naming_attribute_and_group(copy_of):
    strict = _params_with(copy_of, "strict.yaml", fairness={"max_equal_opportunity_difference": 0.001})
    steps.evaluate(copy_of["candidate"], strict)
    gate = steps.gate(copy_of["candidate"], strict)
    assert gate["passed"] is False
    breach = [r for r in gate["reasons"] if r.startswith("fairness:")]
    assert breach and all("equal-opportunity difference" in r and "(group '" in r for r in breach)
    assert any(r.startswith("fairness: SEX ") for r in breach)
    evaluation = copy_of["storage"].read_json(
        f"{layout.model_version('credit_default', copy_of['candidate'])}/evaluation.json"
    )
    education = evaluation["fairness"]["EDUCATION"]
    assert education["too_small_groups"] and all(g["count"] < 50 for g in education["groups"] if g["too_small"])
    assert {g["group"] for g in evaluation["fairness"]["AGE"]["groups"]} >= {"< 25", "25–35", ">= 55"}


def test_higher_expected_cost_is_blocked(copy_of):
    # Trained without a cost section: threshold 0.35, far from the cost-optimal one for FN = 5.
    no_cost = _params_with(copy_of, "no_cost.yaml")
    data = yaml.safe_load(open(no_cost))
    data.pop("cost")
    open(no_cost, "w").write(yaml.safe_dump(data, sort_keys=False))
    version = _train("2025-03-12", no_cost, "no cost")
    assert registry.read_manifest(copy_of["storage"], "credit_default", version)["threshold"] == 0.35
    steps.evaluate(version, copy_of["params"])
    gate = steps.gate(version, copy_of["params"])
    comparison = _gate(copy_of["storage"], version)["comparison"]
    assert comparison["candidate_cost_per_1000"] > comparison["champion_cost_per_1000"]
    assert gate["passed"] is False and any(
        "expected cost" in r and "above the champion's" in r for r in gate["reasons"]
    )


def test_cost_optimal_threshold_is_chosen_out_of_fold_and_used_by_scoring(copy_of):
    storage, champion = copy_of["storage"], copy_of["champion"]
    manifest = registry.read_manifest(storage, "credit_default", champion)
    selection = manifest["threshold_selection"]
    assert selection["method"] == "minimum expected cost on out-of-fold training predictions"
    assert manifest["threshold"] == selection["threshold"] and abs(manifest["threshold"] - 0.5) > 0.1
    assert selection["cost_per_1000"] < selection["cost_at_0.5"]
    for day in ("2025-03-02",):
        steps.ingest(day, copy_of["params"])
        steps.validate(day, copy_of["params"])
        steps.score(day, copy_of["params"])
    key = layout.predictions_partition("credit_default", dt.date(2025, 3, 2))
    assert storage.read_manifest(key)["threshold"] == manifest["threshold"]
    preds = read_parquet_objects(storage, key)
    assert (preds["prediction"] == (preds["score"] >= manifest["threshold"]).astype("int8")).all()
    assert set(preds["decided_by"]) == {"champion"}


def test_rollback_restores_the_previous_champion_with_history(copy_of, capsys):
    storage, params = copy_of["storage"], copy_of["params"]
    candidate, champion = copy_of["candidate"], copy_of["champion"]
    steps.registry_action("promote", candidate, "better on the shared holdout", force=True, params=params)
    assert registry.champion_version(storage, "credit_default") == candidate
    with pytest.raises(registry.RegistryError, match="needs a reason"):
        steps.registry_action("rollback", None, "  ", params=params)
    from pipeline.cli import main

    assert main(["--params", params, "models", "rollback", "--reason", "complaints from analysts"]) == 0
    assert registry.champion_version(storage, "credit_default") == champion
    capsys.readouterr()
    assert main(["--params", params, "--json", "models", "list"]) == 0
    listed = json.loads(capsys.readouterr().out)
    statuses = [v["status"] for v in listed["versions"]]
    assert statuses.count("champion") == 1 and "retired" in statuses
    moves = [h for h in registry.history(storage, "credit_default") if h["outcome"] == "done"]
    assert [(m["action"], m["version"], m["reason"]) for m in moves[-2:]] == [
        ("promote", candidate, "better on the shared holdout"),
        ("rollback", champion, "complaints from analysts"),
    ]
    assert moves[-1]["previous_version"] == candidate and moves[-2]["forced"] is True  # --force is recorded


PROMOTE = """
import sys, time
from pipeline.model import registry
from pipeline.core.storage import open_storage
storage = open_storage(sys.argv[1], {"endpoint_url": sys.argv[2], "access_key_id": "testing",
                                     "secret_access_key": "testing", "region": "us-east-1"})
time.sleep(max(0.0, float(sys.argv[4]) - time.time()))
try:
    registry.promote(storage, "m", sys.argv[3], "race " + sys.argv[3], actor=sys.argv[3])
    print("done")
except registry.RegistryError as exc:
    print("refused:", exc)
"""


def test_two_promotions_at_once_on_s3_leave_one_champion(s3_server, tmp_path):
    import boto3
    from sklearn.dummy import DummyClassifier

    boto3.client(
        "s3",
        endpoint_url=s3_server,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name="us-east-1",
    ).create_bucket(Bucket="race")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    for round_ in range(3):
        root = f"s3://race/round{round_}"
        storage = open_storage(
            root,
            {
                "endpoint_url": s3_server,
                "access_key_id": "testing",
                "secret_access_key": "testing",
                "region": "us-east-1",
            },
        )
        for v in ("a", "b"):
            registry.save_version(storage, "m", v, DummyClassifier().fit([[0], [1]], [0, 1]), {})
            storage.write_json(f"models/m/versions/{v}/gate.json", {"passed": True, "reasons": []})
        start = time.time() + 4
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", PROMOTE, root, s3_server, v, str(start)],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for v in ("a", "b")
        ]
        outs = [p.communicate(timeout=120) for p in procs]
        results = [o[0].strip() for o in outs]
        assert sorted(r.split(":")[0] for r in results) == ["done", "refused"], outs
        winner = ["a", "b"][results.index("done")]
        assert registry.champion_version(storage, "m") == winner
        attempts = registry.history(storage, "m")
        assert sorted(h["outcome"] for h in attempts) == ["done", "refused"]
        assert {h["version"] for h in attempts} == {"a", "b"}
        assert [m["status"] for m in registry.list_versions(storage, "m")].count("champion") == 1


def test_canary_routing_share_and_stability():
    from pipeline.model.score import canary_mask

    keys = pd.Series(np.arange(1_000_000, 1_010_000))
    mask = canary_mask(keys, 0.1)
    assert abs(mask.mean() - 0.1) <= 0.02
    assert (canary_mask(keys, 0.1) == mask).all()  # a rerun routes the same rows
    assert (canary_mask(keys.astype(str), 0.1) == mask).all()  # by the key's text: same across dtypes
    assert not canary_mask(keys, 0.0).any()


def test_shadow_and_canary_scoring(copy_of):
    storage = copy_of["storage"]
    canary = _params_with(copy_of, "canary.yaml", scoring={"canary_share": 0.3})
    steps.registry_action("set_challenger", copy_of["candidate"], "shadow before promotion", force=True, params=canary)
    day = "2025-03-02"
    steps.ingest(day, canary)
    steps.validate(day, canary)
    result = steps.score(day, canary)
    assert result["challenger_version"] == copy_of["candidate"]
    prod_key = layout.predictions_partition("credit_default", dt.date(2025, 3, 2))
    shadow_key = layout.shadow_predictions_partition("credit_default", dt.date(2025, 3, 2))
    prod, shadow = read_parquet_objects(storage, prod_key), read_parquet_objects(storage, shadow_key)
    assert len(prod) == len(shadow) == result["rows"]
    assert list(shadow.columns) == list(prod.columns) and set(shadow["decided_by"]) == {"shadow"}
    canary_rows = prod[prod["decided_by"] == "challenger"]
    assert 0.15 < len(canary_rows) / len(prod) < 0.45
    assert (canary_rows["model_version"] == copy_of["candidate"]).all()
    assert (prod.loc[prod["decided_by"] == "champion", "model_version"] == copy_of["champion"]).all()
    # Each row carries the threshold of the model that decided it.
    for alias, version in (("challenger", copy_of["candidate"]), ("champion", copy_of["champion"])):
        threshold = registry.read_manifest(storage, "credit_default", version)["threshold"]
        assert (prod.loc[prod["decided_by"] == alias, "threshold"] == threshold).all()
    merged = canary_rows.merge(shadow, on="ID", suffixes=("", "_shadow"))
    assert np.allclose(merged["score"], merged["score_shadow"])
    # Shadow partitions never appear under predictions/.
    assert not [k for k in storage.list_keys("predictions") if "shadow" in k]
    again = steps.score(day, canary)  # a rerun routes the same rows
    prod2 = read_parquet_objects(storage, prod_key)
    assert again["rows"] == result["rows"]
    assert set(prod2.loc[prod2["decided_by"] == "challenger", "ID"]) == set(canary_rows["ID"])
    # Once labels arrive, the shadow days compare champion and challenger.
    from pipeline.data.ingest import ingest_labels

    ingest_labels(copy_of["config"], storage, dt.date(2025, 3, 2), as_of=dt.date(2025, 3, 16))
    comparison = steps.compare_shadow(params=canary)
    assert comparison["labelled_days"] == 1
    assert comparison["champion"]["version"] == copy_of["champion"]
    assert comparison["challenger"]["version"] == copy_of["candidate"]
    assert comparison["champion"]["rows"] == (prod["decided_by"] == "champion").sum()


def _respond(
    dag_id: str, task_id: str, option: str, reason: str, user: str, stop: threading.Event, errors: list
) -> None:
    """What the HITL REST endpoint does on a response: record it and resume the parked task.
    On any error the task is failed, so dag.test() returns instead of waiting forever."""
    from airflow._shared.timezones import timezone
    from airflow.models.hitl import HITLDetail, HITLUser
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.trigger import handle_event_submit
    from airflow.triggers.base import TriggerEvent
    from airflow.utils.session import create_session
    from airflow.utils.state import TaskInstanceState

    deadline = time.monotonic() + 600
    while not stop.is_set():
        with create_session() as session:
            ti = (
                session.query(TaskInstance)
                .filter(
                    TaskInstance.dag_id == dag_id,
                    TaskInstance.task_id == task_id,
                    TaskInstance.state == TaskInstanceState.AWAITING_INPUT,
                )
                .one_or_none()
            )
            detail = session.query(HITLDetail).filter(HITLDetail.ti_id == ti.id).one_or_none() if ti else None
            if detail is not None or (ti is not None and time.monotonic() > deadline):
                try:
                    detail.responded_by = HITLUser(id=user, name=user)
                    detail.responded_at = timezone.utcnow()
                    detail.chosen_options = [option]
                    detail.params_input = {"reason": reason}
                    session.add(detail)
                    handle_event_submit(
                        TriggerEvent(detail.as_resume_event_payload()), task_instance=ti, session=session
                    )
                except Exception as exc:  # noqa: BLE001 - reported by the test, and the run unblocked
                    errors.append(exc)
                    session.rollback()
                    ti = session.get(TaskInstance, ti.id)
                    ti.state = TaskInstanceState.FAILED
                return
        time.sleep(0.5)


def _run_with_response(bag, as_of: str, option: str, reason: str) -> dict:
    import pendulum

    stop, errors = threading.Event(), []
    responder = threading.Thread(
        target=_respond, args=("training_pipeline", "approve", option, reason, "alice", stop, errors), daemon=True
    )
    responder.start()
    day = dt.date.fromisoformat(as_of)
    try:
        bag.get_dag("training_pipeline").test(logical_date=pendulum.datetime(day.year, day.month, day.day, tz="UTC"))
    finally:
        stop.set()
        responder.join(timeout=10)
    assert not errors, errors
    return task_states(bag, "training_pipeline")


def test_approval_in_the_airflow_ui_path(airflow_db, copy_of, monkeypatch):
    from airflow.dag_processing.dagbag import DagBag

    # The comparison is relaxed here (5-day test holdouts give wide intervals): this test is about
    # the human step after a passed gate.
    approval = _params_with(
        copy_of, "approval.yaml", gate={"require_approval": True, "min_improvement": -1.0, "max_cost_increase": 1e9}
    )
    monkeypatch.setenv("PIPELINE_PARAMS", approval)
    bag = DagBag(str(ROOT / "dags"))
    dag = bag.get_dag("training_pipeline")
    assert {"gate_passed", "approve", "register", "record_approval"} <= set(dag.task_ids)
    storage, candidate = copy_of["storage"], copy_of["candidate"]

    states = _run_with_response(bag, "2025-03-12", "Approve", "looks good")
    assert states["approve"] == "success" and states["register"] == "success", states
    assert registry.champion_version(storage, "credit_default") == candidate
    events = registry.history(storage, "credit_default")
    promote = [h for h in events if h["action"] == "promote" and h["outcome"] == "done"][-1]
    assert promote["actor"] == "alice" and promote["version"] == candidate and promote["run_id"]
    assert [(h["outcome"], h["actor"], h["reason"]) for h in events if h["action"] == "approval"] == [
        ("approved", "alice", "looks good")
    ]

    states = _run_with_response(bag, "2025-03-19", "Reject", "holdout too small")
    assert states["approve"] == "success" and states["register"] == "skipped", states
    assert registry.champion_version(storage, "credit_default") == candidate
    rejected = [h for h in registry.history(storage, "credit_default") if h["action"] == "approval"][-1]
    assert (rejected["outcome"], rejected["actor"], rejected["reason"]) == ("rejected", "alice", "holdout too small")


def test_a_sensitive_attribute_excluded_from_features_is_still_judged(tmp_path):
    params = str(write_params(tmp_path, training=SMALL))
    data = yaml.safe_load(open(params))
    data["dataset"]["features"] = {"categorical": ["EDUCATION", "MARRIAGE"], "numeric": [], "exclude": ["SEX"]}
    open(params, "w").write(yaml.safe_dump(data, sort_keys=False))
    result = steps.run_training("2025-03-01", params)
    storage = open_storage(load_config(params).storage.root)
    version = result["train"]["version"]
    manifest = registry.read_manifest(storage, "credit_default", version)
    assert "SEX" not in manifest["schema"]["categorical"] + manifest["schema"]["numeric"]
    assert manifest["schema"]["sensitive"] == ["SEX"]
    evaluation = storage.read_json(f"{layout.model_version('credit_default', version)}/evaluation.json")
    assert [g["group"] for g in evaluation["fairness"]["SEX"]["groups"]] == ["1", "2"]
    assert evaluation["fairness"]["SEX"]["demographic_parity_ratio"] is not None


def test_model_registry_dag_rolls_back_from_the_ui(airflow_db, copy_of):
    import pendulum
    from airflow.dag_processing.dagbag import DagBag

    storage = copy_of["storage"]
    steps.registry_action("promote", copy_of["candidate"], "try the new one", force=True, params=copy_of["params"])
    dag = DagBag(str(ROOT / "dags")).get_dag("model_registry")  # private: run_conf stays in the DAG object
    run = dag.test(logical_date=pendulum.now("UTC"), run_conf={"action": "rollback", "reason": "from the UI"})
    assert str(getattr(run.state, "value", run.state)) == "success"
    assert registry.champion_version(storage, "credit_default") == copy_of["champion"]
    last = registry.history(storage, "credit_default")[-1]
    assert (last["action"], last["reason"], last["outcome"]) == ("rollback", "from the UI", "done")
    assert last["run_id"] == run.run_id and last["actor"]


def test_a_day_keeps_its_decisions_after_a_promotion_and_revisions_stay_readable(dagbag, copy_of, capsys):
    """Point-in-time scoring: day D scored by v1 through Airflow; v2 promoted; a rerun of D (a clear,
    a backfill) still decides by v1; `run-scoring --model-version v2` makes a second revision, both
    readable, the change audited, and `explain` shows both."""
    from helpers import run_dag

    from pipeline import cli
    from pipeline.ops import audit

    params, storage = copy_of["params"], copy_of["storage"]
    v1, v2, day = copy_of["champion"], copy_of["candidate"], dt.date(2025, 3, 2)
    key = layout.predictions_partition("credit_default", day)
    assert run_dag(dagbag, "batch_scoring", day) == "success"
    assert storage.read_manifest(key)["model_version"] == v1
    steps.registry_action("promote", v2, "the newer model", force=True, params=params)
    assert registry.champion_version(storage, "credit_default") == v2

    assert run_dag(dagbag, "batch_scoring", day) == "success"  # a rerun of the day
    rerun = storage.read_manifest(key)
    assert rerun["model_version"] == v1 and rerun["revisions"] == []
    assert set(read_parquet_objects(storage, key)["model_version"]) == {v1}

    refusals = {"20250101-0000000000": "has no version '20250101-0000000000'", "../../x": "is not a version id"}
    for unknown, message in refusals.items():  # refused by name, before anything is scored
        bad = ["--params", params, "score", "--date", day.isoformat(), "--model-version", unknown]
        assert cli.main(bad) == 2
        assert message in capsys.readouterr().err
    assert storage.read_manifest(key)["publish_id"] == rerun["publish_id"]
    argv = ["--params", params, "run-scoring", "--date", day.isoformat(), "--model-version", v2]
    assert cli.main([*argv, "--reason", "re-decided after the promotion"]) == 0
    current = storage.read_manifest(key)
    assert current["model_version"] == v2
    assert [r["model_version"] for r in current["revisions"]] == [v1]
    kept_key = layout.predictions_revision("credit_default", day, current["revisions"][0]["publish_id"])
    kept, now = read_parquet_objects(storage, kept_key), read_parquet_objects(storage, key)
    assert set(kept["model_version"]) == {v1} and set(now["model_version"]) == {v2}
    assert len(kept) == len(now)
    import duckdb  # the README's query over a day's revisions

    root = copy_of["config"].storage.root
    every = duckdb.sql(
        f"select 'current' as revision, * from read_parquet('{root}/predictions/credit_default/dt={day}/*.parquet') "
        f"union all by name select rev as revision, * exclude (dt) from read_parquet("
        f"'{root}/predictions_revisions/credit_default/dt={day}/*/*.parquet', hive_partitioning = true)"
    ).df()
    assert dict(every.groupby("model_version").size()) == {v1: len(kept), v2: len(now)}
    (change,) = audit.list_records(storage, kind="rescoring")
    assert change["previous_version"] == v1 and change["version"] == v2
    assert change["why"] == "re-decided after the promotion"

    row_id = str(now["ID"].iloc[0])
    capsys.readouterr()
    assert cli.main(["--params", params, "explain", "--date", day.isoformat(), "--id", row_id]) == 0
    explained = json.loads(capsys.readouterr().out)
    assert explained["decision"]["model_version"] == v2
    assert explained["revisions"][0]["row"]["model_version"] == v1
    assert explained["decision"]["threshold"] == registry.read_manifest(storage, "credit_default", v2)["threshold"]
    assert set(explained["models"]) == {v1, v2}
    snapshot = explained["models"][v1]["training_snapshot"]
    assert snapshot["snapshot_id"] and len(snapshot["snapshot_sha256"]) == 64  # + its DVC md5 when DVC is on
    assert explained["validation"]["success"] is True
    assert explained["decision"]["input_publish_id"] == explained["validation"]["raw_publish_id"]
