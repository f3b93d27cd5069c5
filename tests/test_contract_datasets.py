"""Datasets of other shapes through the contract: no id column, and a few dirty values per day."""

import datetime as dt

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import ROOT, write_params

from pipeline import steps
from pipeline.core import layout
from pipeline.core.settings import load_config
from pipeline.core.storage import open_storage
from pipeline.data.source import missing_tokens


def test_dataset_without_id_column_runs_end_to_end_with_stable_row_keys(tmp_path):
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer(as_frame=True)
    frame = data.frame.drop(columns="target")
    frame["diagnosis"] = data.target.map({0: "malignant", 1: "benign"})
    frame.to_csv(tmp_path / "breast_cancer.csv", index=False)  # no id, no index column
    params = yaml.safe_load((ROOT / "tests/params_breast_cancer.yaml").read_text())
    params["dataset"]["id_column"] = None
    params["dataset"]["source"]["uri"] = str(tmp_path / "breast_cancer.csv")
    path = write_params(tmp_path, params)
    config = load_config(path)
    assert config.dataset.id_column is None
    steps.run_training(config.demo.train_as_of, str(path))
    day = config.demo.score_days[0]
    first = steps.run_scoring(day, str(path))["score"]
    storage = open_storage(config.storage.root)
    key = layout.predictions_partition("breast_cancer_lr", day)
    keys_1 = storage.read_partition(key).to_pandas()["row_key"].tolist()
    steps.run_scoring(day, str(path))  # rerun: same input rows -> same keys
    keys_2 = storage.read_partition(key).to_pandas()["row_key"].tolist()
    assert keys_1 == keys_2 and len(keys_1) == first["rows"] > 0
    assert all(len(k) == 16 and int(k, 16) >= 0 for k in keys_1) and len(set(keys_1)) == len(keys_1)
    contract = steps.contract_show(str(path))["contract"]
    assert contract["schema"]["id_derived"] and contract["schema"]["id_column"] == "row_key"


def test_few_percent_out_of_range_per_day_passes_with_mostly_and_reports_shares(tmp_path):
    """Blood-pressure style data: ~3% of AGE values out of range every day."""
    from pipeline.data.source import read_source_text

    base = load_config(ROOT / "params.yaml")
    read_source_text(base.dataset)  # the source reads cleanly before it is made dirty
    raw = pd.read_csv(ROOT / "sources/credit_default/UCI_Credit_Card.csv.gz", dtype=str, keep_default_na=False)
    rng = np.random.default_rng(0)
    dirty = rng.random(len(raw)) < 0.03
    raw.loc[dirty, "AGE"] = "150"
    raw.to_csv(tmp_path / "dirty.csv.gz", index=False)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["dataset"]["source"]["uri"] = str(tmp_path / "dirty.csv.gz")
    strict = write_params(tmp_path, params)
    day = dt.date(2025, 2, 10)
    steps.ingest(day, str(strict))
    with pytest.raises(Exception, match=r"column=AGE\): \d+ of \d+ value\(s\) unexpected \(\d\.\d\d%; limit 0\.00%\)"):
        steps.validate(day, str(strict))
    params["validation"]["mostly"] = {"AGE": {"range": 0.9}}
    params["training"].update(window_days=20, holdout_days=5, cv_folds=3, estimator_params={"max_iter": 40})
    tolerant = write_params(tmp_path, params)
    steps.contract_update("AGE has a few impossible values per day; tolerate up to 10%", params=str(tolerant))
    result = steps.run_training("2025-03-01", str(tolerant))
    assert result["validate"]["quarantined_days"] == 0 and result["snapshot"]["rows"] > 0
    scored = steps.run_scoring("2025-03-02", str(tolerant))
    (tolerated,) = [t for t in scored["validate"]["tolerated"] if t["column"] == "AGE"]
    assert 0.5 < tolerated["unexpected_percent"] < 10 and tolerated["mostly"] == 0.9
    assert scored["score"]["rows"] == scored["validate"]["rows"]


def _one_day_landing(tmp_path, change) -> tuple[str, pd.DataFrame]:
    raw = pd.read_csv(ROOT / "sources/credit_default/UCI_Credit_Card.csv.gz", dtype=str, keep_default_na=False)
    day = raw.iloc[:300].copy().reset_index(drop=True)
    change(day)
    (tmp_path / "landing/dt=2025-02-10").mkdir(parents=True)
    day.to_csv(tmp_path / "landing/dt=2025-02-10/delivery.csv", index=False)
    return str(tmp_path / "landing/dt={date}/*.csv"), day


def test_quarantine_rows_policy_publishes_the_good_rows_and_keeps_the_bad_with_reasons(tmp_path):
    def dirty(day):
        day.loc[3, "LIMIT_BAL"] = "abc"
        day.loc[7, "ID"] = ""
        day.loc[9] = day.loc[8]  # exact duplicate: dropped, counted

    uri, day = _one_day_landing(tmp_path, dirty)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["dataset"]["source"] = {"uri": uri, "format": "csv"}
    params["validation"].update(row_policy="quarantine_rows", max_bad_row_share=0.05)
    path = write_params(tmp_path, params)
    staged = steps.ingest("2025-02-10", str(path))
    assert (staged["rows_delivered"], staged["rows_quarantined"], staged["duplicates_dropped"]) == (300, 2, 1)
    assert staged["rows"] == 297
    published = steps.validate("2025-02-10", str(path))
    assert published["rows"] == 297
    (q,) = steps.quarantine_list(params=str(path))
    assert q["stage"] == "typing"
    assert any("'LIMIT_BAL': 1 value(s) not a number (lines [5])" in r for r in q["reasons"])
    assert any("'ID': 1 value(s) missing (no id) (lines [9])" in r for r in q["reasons"])
    storage = open_storage(load_config(path).storage.root)
    bad = storage.read_partition(q["uri"].removeprefix(storage.uri("") + "/")).to_pandas()
    assert sorted(bad["_line"]) == ["5", "9"] and bad["_reason"].str.contains("column").all()


def test_na_values_extend_the_defaults_unless_told_to_replace_them(tmp_path):
    uri, _ = _one_day_landing(
        tmp_path, lambda day: day.__setitem__("BILL_AMT1", day["BILL_AMT1"].where(day.index % 50 != 0, "?"))
    )
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["dataset"]["source"] = {"uri": uri, "format": "csv", "na_values": ["?"]}
    config = load_config(write_params(tmp_path, params))
    assert "?" in missing_tokens(config.dataset.source) and "NA" in missing_tokens(config.dataset.source)
    staged = steps.ingest("2025-02-10", config.params_path)
    assert staged["rows_quarantined"] == 0  # '?' is missing, not text in a number column
    params["dataset"]["source"]["replace_default_na_values"] = True
    replaced = load_config(write_params(tmp_path / "r", params))
    assert missing_tokens(replaced.dataset.source) == ("?",)
