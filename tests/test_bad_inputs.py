"""A catalogue of broken deliveries and params, each run through ingest -> validate -> score on
top of a good committed day (the batch_scoring DAG's order; a failed step stops the run).

For every case: the message names the problem, the committed raw partition and the earlier
predictions are unchanged, and the quarantine holds the delivery. The committed suite stays
byte-identical. Counts go to tests/results/bad_inputs_summary.json.
"""
from __future__ import annotations

import gzip
import io
import json
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml

from pipeline import layout, steps
from pipeline.config import ConfigError, load_config
from pipeline.storage import open_storage
from conftest import ROOT, write_params

GOOD_DAY = "2025-03-02"
SUMMARY = ROOT / "tests" / "results" / "bad_inputs_summary.json"


def _source_days() -> dict[str, pd.DataFrame]:
    from pipeline.source import assign_days, read_source_text

    config = load_config(ROOT / "params.yaml")
    text = read_source_text(config.dataset)
    raw = pd.read_csv(ROOT / "sources/credit_default/UCI_Credit_Card.csv.gz", dtype=str, keep_default_na=False)
    days = assign_days(config.dataset, text).map(lambda d: d.isoformat())
    return {day: raw[days.to_numpy() == day] for day in sorted(set(days))}


def _csv(frame: pd.DataFrame, sep: str = ",") -> bytes:
    return frame.to_csv(index=False, sep=sep).encode()


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A landing area with one file per day, a champion, and a good committed, scored day."""
    tmp = tmp_path_factory.mktemp("bad_inputs")
    by_day = _source_days()
    landing = tmp / "landing"
    for day, frame in by_day.items():
        if "2025-01-20" <= day <= GOOD_DAY:
            (landing / f"dt={day}").mkdir(parents=True)
            (landing / f"dt={day}" / "delivery.csv").write_bytes(_csv(frame))
    base = yaml.safe_load((ROOT / "params.yaml").read_text())
    base["dataset"]["source"] = {"uri": str(landing / "dt={date}" / "*"), "format": "csv"}
    base["dataset"]["features"]["numeric"] = ["LIMIT_BAL"]  # declared; AGE etc. stay inferred
    params = write_params(tmp, base, training={"window_days": 20, "holdout_days": 5, "cv_folds": 3,
                                               "estimator_params": {"max_iter": 40}})
    steps.run_training("2025-03-01", str(params))
    steps.run_scoring(GOOD_DAY, str(params))
    config = load_config(params)
    suite = Path(config.validation.gx_root) / "expectations" / "credit_default_raw_batch.json"
    return {"tmp": tmp, "params": params, "landing": landing, "good": by_day[GOOD_DAY], "by_day": by_day,
            "storage": open_storage(config.storage.root), "suite": suite, "suite_bytes": suite.read_bytes(),
            "committed_suite": (ROOT / "great_expectations/expectations/credit_default_raw_batch.json").read_bytes(),
            "results": []}


def _deliver(world, files: dict[str, bytes]) -> None:
    folder = world["landing"] / f"dt={GOOD_DAY}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)


def _frame_case(world, change) -> dict[str, bytes]:
    frame = world["good"].copy().reset_index(drop=True)
    out = change(frame)
    return out if isinstance(out, dict) else {"delivery.csv": _csv(out if out is not None else frame)}


def _gz(data: bytes) -> bytes:
    return gzip.compress(data)


def _set(frame, row, col, value):
    frame.loc[row, col] = value
    return frame


def _dup_id(frame):
    frame.loc[1, "ID"] = frame.loc[0, "ID"]  # same id, different values
    return frame


def _latin1_on_line_5(data: bytes) -> bytes:
    lines = data.split(b"\n")
    lines[4] = b"\xe9" + lines[4]  # a Latin-1 byte on line 5 (the header is line 1)
    return b"\n".join(lines)


def _ten_times(world_frames):
    def change(frame):
        big = pd.concat([frame] * 10, ignore_index=True)
        big["ID"] = [str(900000 + i) for i in range(len(big))]
        return big
    return change


DELIVERY_CASES = {
    "empty_file": (lambda w: {"delivery.csv": b""}, r"empty file"),
    "header_only": (lambda w: {"delivery.csv": _csv(w["good"].iloc[:0])}, r"header only"),
    "wrong_delimiter": (lambda w: {"delivery.csv": _csv(w["good"], sep=";")}, r"delimited by ';'"),
    "missing_column_configured": (lambda w: _frame_case(w, lambda f: f.drop(columns=["SEX"])),
                                  r"column 'SEX' of contract v1 is missing"),
    "missing_column_inferred": (lambda w: _frame_case(w, lambda f: f.drop(columns=["BILL_AMT3"])),
                                r"column 'BILL_AMT3' of contract v1 is missing"),
    "extra_column": (lambda w: _frame_case(w, lambda f: f.assign(NEW_SCORE="1")),
                     r"\['NEW_SCORE'\] are not in contract v1"),
    "renamed_column_configured": (lambda w: _frame_case(w, lambda f: f.rename(columns={"EDUCATION": "EDUCATION_LEVEL"})),
                                  r"'EDUCATION' of contract v1 is missing \(renamed to 'EDUCATION_LEVEL'\?\)"),
    "renamed_column_inferred": (lambda w: _frame_case(w, lambda f: f.rename(columns={"PAY_AMT1": "PAY_AMT_1"})),
                                r"'PAY_AMT1' of contract v1 is missing \(renamed to 'PAY_AMT_1'\?\)"),
    "text_in_numeric_declared": (lambda w: _frame_case(w, lambda f: _set(_set(f, 3, "LIMIT_BAL", "abc"), 5, "LIMIT_BAL", "n/a?")),
                                 r"column 'LIMIT_BAL': 2 value\(s\) not a number \(lines \[\d+, \d+\]\)"),
    "text_in_numeric_inferred": (lambda w: _frame_case(w, lambda f: _set(f, 7, "BILL_AMT1", "abc")),
                                 r"column 'BILL_AMT1': 1 value\(s\) not a number \(lines \[\d+\]\)"),
    "all_null_column": (lambda w: _frame_case(w, lambda f: f.assign(BILL_AMT2="")),
                        r"expect_column_values_to_not_be_null\(column=BILL_AMT2\): \d+ of \d+ value\(s\) unexpected \(100\.00%; limit 2\.00%\)"),
    "unseen_category": (lambda w: _frame_case(w, lambda f: _set(f, 2, "EDUCATION", "9")),
                        r"expect_column_values_to_be_in_set\(column=EDUCATION\): 1 of \d+"),
    "duplicate_ids": (lambda w: _frame_case(w, _dup_id), r"1 id\(s\) appear on 2 rows with different values"),
    "missing_ids": (lambda w: _frame_case(w, lambda f: _set(_set(f, 0, "ID", ""), 1, "ID", "")),
                    r"column 'ID': 2 value\(s\) missing \(no id\)"),
    "out_of_range": (lambda w: _frame_case(w, lambda f: _set(f, 4, "AGE", "170")),
                     r"expect_column_values_to_be_between\(column=AGE\): 1 of \d+ value\(s\) unexpected"),
    "non_utf8": (lambda w: {"delivery.csv": _latin1_on_line_5(_csv(w["good"]))}, r"line 5 is not UTF-8"),
    "truncated_gzip": (lambda w: {"delivery.csv.gz": _gz(_csv(w["good"]))[:-200]}, r"truncated gzip"),
    "corrupt_gzip": (lambda w: {"delivery.csv.gz": b"\x1f\x8bnot really gzip" * 10}, r"corrupt gzip"),
    "ten_times_larger": (lambda w: _frame_case(w, _ten_times(w)),
                         r"expect_table_row_count_to_be_between: observed \d+, allowed \[50, \d+\]"),
}


def _state(world):
    storage = world["storage"]
    raw = storage.read_manifest(layout.raw_partition("credit_default", _d(GOOD_DAY)))
    preds = storage.read_manifest(layout.predictions_partition("credit_default", _d(GOOD_DAY)))
    return raw["publish_id"], preds["publish_id"], len(steps.quarantine_list(params=str(world["params"])))


def _d(day: str):
    import datetime as dt

    return dt.date.fromisoformat(day)


def _run(params) -> str:
    """ingest -> validate -> score, stopping at the first failure like the DAG; the error text."""
    try:
        staged = steps.ingest(GOOD_DAY, str(params))
        steps.validate(GOOD_DAY, str(params), delivery_id=staged["delivery_id"])
        steps.score(GOOD_DAY, str(params))
    except Exception as exc:  # noqa: BLE001 - the message is what is asserted
        return f"{type(exc).__name__}: {exc}"
    return "no error"


@pytest.mark.parametrize("case", list(DELIVERY_CASES))
def test_bad_delivery(world, case):
    build, expected = DELIVERY_CASES[case]
    raw_before, preds_before, quarantined_before = _state(world)
    _deliver(world, build(world))
    try:
        message = _run(world["params"])
    finally:
        _deliver(world, {"delivery.csv": _csv(world["good"])})
    assert re.search(expected, message), message
    raw_after, preds_after, quarantined_after = _state(world)
    assert (raw_after, preds_after) == (raw_before, preds_before), "committed data changed"
    assert quarantined_after == quarantined_before + 1, "the delivery is not in quarantine"
    (latest,) = [q for q in steps.quarantine_list(params=str(world["params"]))[-1:]]
    assert latest["day"] == GOOD_DAY and latest["delivery_id"] in message
    assert world["suite"].read_bytes() == world["suite_bytes"]
    world["results"].append({"case": case, "kind": "delivery", "stage": latest["stage"], "message": message[:300]})


def test_truncated_parquet_delivery(tmp_path):
    """A Parquet landing area: a truncated file is named, quarantined, and the good day stays."""
    good = _source_days()["2025-02-10"]
    landing = tmp_path / "landing" / "dt=2025-02-10"
    landing.mkdir(parents=True)
    good.to_parquet(landing / "delivery.parquet", index=False)
    base = yaml.safe_load((ROOT / "params.yaml").read_text())
    base["dataset"]["source"] = {"uri": str(tmp_path / "landing/dt={date}/*.parquet"), "format": "parquet"}
    params = write_params(tmp_path, base)
    staged = steps.ingest("2025-02-10", str(params))
    steps.validate("2025-02-10", str(params), delivery_id=staged["delivery_id"])
    storage = open_storage(load_config(params).storage.root)
    before = storage.read_manifest(layout.raw_partition("credit_default", _d("2025-02-10")))["publish_id"]
    data = (landing / "delivery.parquet").read_bytes()
    (landing / "delivery.parquet").write_bytes(data[: len(data) // 2])
    with pytest.raises(Exception, match=r"delivery.parquet: not a readable Parquet file.*truncated"):
        steps.ingest("2025-02-10", str(params))
    assert storage.read_manifest(layout.raw_partition("credit_default", _d("2025-02-10")))["publish_id"] == before
    (q,) = steps.quarantine_list(params=str(params))
    assert q["stage"] == "read" and "not a readable Parquet" in q["reasons"][0]
    _record({"case": "truncated_parquet", "kind": "delivery", "stage": q["stage"], "message": q["reasons"][0][:300]})


PARAMS_CASES = {
    "typo": (lambda p: p.update(validaton={"min_rows": 1}), r"unknown key\(s\) \['validaton'\]"),
    "wrong_type": (lambda p: p["validation"].update(min_rows="ten"), r"validation.min_rows: expected a number"),
    "swapped_range": (lambda p: p["validation"]["ranges"].update(AGE=[100, 18]),
                      r"validation.ranges.AGE: \[100, 18\] is not ordered"),
    "unknown_column": (lambda p: p["validation"]["ranges"].update(AGEE=[18, 100]),
                       r"validation.ranges names \['AGEE'\].*'AGEE' -> 'AGE'\?"),
    "sensitive_names_no_column": (lambda p: p["dataset"].update(sensitive_attributes=["GENDER"]),
                                  r"dataset.sensitive_attributes names \['GENDER'\]"),
    "unquoted_yes": (lambda p: p["dataset"]["target"].update(positive_class=True),
                     r"positive_class: got the boolean True.*quote"),
    "id_is_pii": (lambda p: p["dataset"].update(pii_columns=["ID"]), r"id_column 'ID' is listed in dataset.pii_columns"),
    "id_is_target": (lambda p: p["dataset"].update(id_column="default.payment.next.month"),
                     r"id_column 'default.payment.next.month' is also the target"),
    "null_text_value": (lambda p: p["dataset"]["target"].update(column=None), r"target.column: expected text, got nothing"),
}


@pytest.mark.parametrize("case", list(PARAMS_CASES))
def test_malformed_params_are_refused_at_load(tmp_path, case):
    change, expected = PARAMS_CASES[case]
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    change(params)
    path = write_params(tmp_path, params)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert re.search(expected, str(info.value)), str(info.value)
    _record({"case": f"params_{case}", "kind": "params", "stage": "load", "message": str(info.value)[:300]})


def test_absent_positive_class_is_refused_with_the_values_found(tmp_path):
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["dataset"]["target"]["positive_class"] = "Yes"
    path = write_params(tmp_path, params)
    with pytest.raises(ConfigError, match=r"positive_class 'Yes' never occurs.*values found: \['0', '1'\]") as info:
        steps.ingest("2025-02-10", str(path))
    storage = open_storage(load_config(path).storage.root)
    assert not storage.list_keys("raw") and not storage.list_keys("staging")
    _record({"case": "params_absent_positive_class", "kind": "params", "stage": "first read",
             "message": str(info.value)[:300]})


_EXTRA: list[dict] = []


def _record(entry: dict) -> None:
    _EXTRA.append(entry)


def test_summary_and_committed_suite_unchanged(world):
    """Runs last in this module: the suites are byte-identical, and the counts are written."""
    assert world["suite"].read_bytes() == world["suite_bytes"]
    assert (ROOT / "great_expectations/expectations/credit_default_raw_batch.json").read_bytes() == world["committed_suite"]
    results = world["results"] + _EXTRA
    summary = {"cases": len(results),
               "by_kind": {k: sum(r["kind"] == k for r in results) for k in ("delivery", "params")},
               "by_stage": {s: sum(r["stage"] == s for r in results) for s in sorted({r["stage"] for r in results})},
               "results": results}
    SUMMARY.parent.mkdir(parents=True, exist_ok=True)
    SUMMARY.write_text(json.dumps(summary, indent=2))
    assert summary["by_kind"]["delivery"] >= len(DELIVERY_CASES)
