"""A catalogue of broken deliveries and params, each run through ingest -> validate -> score on
top of a good committed day (the batch_scoring DAG's order; a failed step stops the run).

For every case: the message names the problem, the committed raw partition and the earlier
predictions are unchanged, and the quarantine holds the delivery. The committed suite stays
byte-identical. Counts go to tests/results/bad_inputs_summary.json.
"""

from __future__ import annotations

import gzip
import json
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import ROOT, write_params

from pipeline import steps
from pipeline.core import layout
from pipeline.core.errors import ConfigError
from pipeline.core.settings import load_config
from pipeline.core.storage import open_storage

GOOD_DAY = "2025-03-02"
SUMMARY = ROOT / "tests" / "results" / "bad_inputs_summary.json"


def _source_days() -> dict[str, pd.DataFrame]:
    from pipeline.data.source import assign_days, read_source_text

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
    # Limits small enough that a test can exceed them (a good day is ~330 rows, ~40 KB).
    base["dataset"]["source"].update(max_bytes=8 << 20, max_rows=20_000)
    params = write_params(
        tmp, base, training={"window_days": 20, "holdout_days": 5, "cv_folds": 3, "estimator_params": {"max_iter": 40}}
    )
    steps.run_training("2025-03-01", str(params))
    steps.run_scoring(GOOD_DAY, str(params))
    config = load_config(params)
    suite = Path(config.validation.gx_root) / "expectations" / "credit_default_raw_batch.json"
    outside = tmp / "outside"
    outside.mkdir()
    (outside / "elsewhere.csv").write_bytes(_csv(by_day[GOOD_DAY]))
    return {
        "tmp": tmp,
        "params": params,
        "landing": landing,
        "outside": outside,
        "good": by_day[GOOD_DAY],
        "by_day": by_day,
        "storage": open_storage(config.storage.root),
        "suite": suite,
        "suite_bytes": suite.read_bytes(),
        "committed_suite": (ROOT / "great_expectations/expectations/credit_default_raw_batch.json").read_bytes(),
        "results": [],
    }


def _deliver(world, files: dict[str, bytes | Path], day: str = GOOD_DAY) -> None:
    folder = world["landing"] / f"dt={day}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for name, data in files.items():
        if isinstance(data, Path):  # a symlink planted in the landing area
            (folder / name).symlink_to(data)
        else:
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


def _gzip_bomb(world) -> dict[str, bytes]:
    header = ",".join(world["good"].columns).encode() + b"\n"
    return {"delivery.csv.gz": gzip.compress(header + b"0" * (64 << 20), compresslevel=9)}  # ~64 KB -> 64 MB


def _too_many_rows(frame):
    big = pd.concat([frame] * 70, ignore_index=True)
    big["ID"] = [str(800000 + i) for i in range(len(big))]
    return big


def _column_of(frame, col, make):
    frame[col] = [make(i) for i in range(len(frame))]
    return frame


def _luhn_card(i: int) -> str:
    body = f"4000{i:011d}"
    total = 0
    for j, ch in enumerate(reversed(body)):
        d = int(ch)
        if j % 2 == 0:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return body + str((10 - total % 10) % 10)


DELIVERY_CASES = {
    "empty_file": (lambda w: {"delivery.csv": b""}, r"empty file"),
    "header_only": (lambda w: {"delivery.csv": _csv(w["good"].iloc[:0])}, r"header only"),
    "wrong_delimiter": (lambda w: {"delivery.csv": _csv(w["good"], sep=";")}, r"delimited by ';'"),
    "missing_column_configured": (
        lambda w: _frame_case(w, lambda f: f.drop(columns=["SEX"])),
        r"column 'SEX' of contract v1 is missing",
    ),
    "missing_column_inferred": (
        lambda w: _frame_case(w, lambda f: f.drop(columns=["BILL_AMT3"])),
        r"column 'BILL_AMT3' of contract v1 is missing",
    ),
    "extra_column": (
        lambda w: _frame_case(w, lambda f: f.assign(NEW_SCORE="1")),
        r"\['NEW_SCORE'\] are not in contract v1",
    ),
    "renamed_column_configured": (
        lambda w: _frame_case(w, lambda f: f.rename(columns={"EDUCATION": "EDUCATION_LEVEL"})),
        r"'EDUCATION' of contract v1 is missing \(renamed to 'EDUCATION_LEVEL'\?\)",
    ),
    "renamed_column_inferred": (
        lambda w: _frame_case(w, lambda f: f.rename(columns={"PAY_AMT1": "PAY_AMT_1"})),
        r"'PAY_AMT1' of contract v1 is missing \(renamed to 'PAY_AMT_1'\?\)",
    ),
    "text_in_numeric_declared": (
        lambda w: _frame_case(w, lambda f: _set(_set(f, 3, "LIMIT_BAL", "abc"), 5, "LIMIT_BAL", "n/a?")),
        r"column 'LIMIT_BAL': 2 value\(s\) not a number \(lines \[\d+, \d+\]\)",
    ),
    "text_in_numeric_inferred": (
        lambda w: _frame_case(w, lambda f: _set(f, 7, "BILL_AMT1", "abc")),
        r"column 'BILL_AMT1': 1 value\(s\) not a number \(lines \[\d+\]\)",
    ),
    "all_null_column": (
        lambda w: _frame_case(w, lambda f: f.assign(BILL_AMT2="")),
        r"expect_column_values_to_not_be_null\(column=BILL_AMT2\): \d+ of \d+ value\(s\) unexpected \(100\.00%; limit 2\.00%\)",
    ),
    "unseen_category": (
        lambda w: _frame_case(w, lambda f: _set(f, 2, "EDUCATION", "9")),
        r"expect_column_values_to_be_in_set\(column=EDUCATION\): 1 of \d+",
    ),
    "duplicate_ids": (lambda w: _frame_case(w, _dup_id), r"1 id\(s\) appear on 2 rows with different values"),
    "missing_ids": (
        lambda w: _frame_case(w, lambda f: _set(_set(f, 0, "ID", ""), 1, "ID", "")),
        r"column 'ID': 2 value\(s\) missing \(no id\)",
    ),
    "out_of_range": (
        lambda w: _frame_case(w, lambda f: _set(f, 4, "AGE", "170")),
        r"expect_column_values_to_be_between\(column=AGE\): 1 of \d+ value\(s\) unexpected",
    ),
    "non_utf8": (lambda w: {"delivery.csv": _latin1_on_line_5(_csv(w["good"]))}, r"line 5 is not UTF-8"),
    "truncated_gzip": (lambda w: {"delivery.csv.gz": _gz(_csv(w["good"]))[:-200]}, r"truncated gzip"),
    "corrupt_gzip": (lambda w: {"delivery.csv.gz": b"\x1f\x8bnot really gzip" * 10}, r"corrupt gzip"),
    "ten_times_larger": (
        lambda w: _frame_case(w, _ten_times(w)),
        r"expect_table_row_count_to_be_between: observed \d+, allowed \[50, \d+\]",
    ),
    # Numbers are finite by contract: text 'inf' and values beyond float64 are misfits.
    "inf_in_unranged_column": (
        lambda w: _frame_case(w, lambda f: _set(f, 3, "BILL_AMT1", "inf")),
        r"column 'BILL_AMT1': 1 value\(s\) not a finite number .*lines \[\d+\]",
    ),
    "minus_inf_in_declared_column": (
        lambda w: _frame_case(w, lambda f: _set(f, 6, "LIMIT_BAL", "-Infinity")),
        r"column 'LIMIT_BAL': 1 value\(s\) not a finite number",
    ),
    "beyond_float64": (
        lambda w: _frame_case(w, lambda f: _set(f, 8, "PAY_AMT1", "1e400")),
        r"column 'PAY_AMT1': 1 value\(s\) not a finite number",
    ),
    # Resource limits, enforced while streaming.
    "gzip_bomb": (_gzip_bomb, r"decompresses to more than 8388608 bytes .*stopped there"),
    "too_many_rows": (lambda w: _frame_case(w, _too_many_rows), r"data rows, over the limit of 20000 rows"),
    "symlink_out_of_landing_area": (
        lambda w: {"delivery.csv": w["outside"] / "elsewhere.csv"},
        r"resolves to .*elsewhere.csv, outside the landing area",
    ),
    # Undeclared personal data (messages name the column and the kind, never a value).
    "undeclared_email": (
        lambda w: _frame_case(w, lambda f: _column_of(f, "BILL_AMT4", lambda i: f"p{i}.x@mail.test")),
        r"column 'BILL_AMT4' looks like personal data: \d+ of \d+ sampled value\(s\) match the e-mail",
    ),
    "undeclared_phone": (
        lambda w: _frame_case(w, lambda f: _column_of(f, "BILL_AMT5", lambda i: f"+44 7700 9{i:05d}")),
        r"column 'BILL_AMT5' looks like personal data: .* phone number pattern",
    ),
    "undeclared_card_number": (
        lambda w: _frame_case(w, lambda f: _column_of(f, "BILL_AMT6", _luhn_card)),
        r"column 'BILL_AMT6' looks like personal data: .* payment card number",
    ),
    "undeclared_national_id": (
        lambda w: _frame_case(
            w, lambda f: _column_of(f, "PAY_AMT6", lambda i: f"{100 + i % 500:03d}-{10 + i % 80:02d}-{1000 + i:04d}")
        ),
        r"column 'PAY_AMT6' looks like personal data: .* US social security number",
    ),
}
PII_VALUE = re.compile(r"mail\.test|\+44 7700|4000\d{12}")


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
    assert not PII_VALUE.search(message), "the message quotes a value"
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
    "swapped_range": (
        lambda p: p["validation"]["ranges"].update(AGE=[100, 18]),
        r"validation.ranges.AGE: \[100, 18\] is not ordered",
    ),
    "unquoted_yes": (
        lambda p: p["dataset"]["target"].update(positive_class=True),
        r"positive_class: got the boolean True.*quote",
    ),
    "id_is_pii": (
        lambda p: p["dataset"].update(pii_columns=["ID"]),
        r"id_column 'ID' is listed in dataset.pii_columns",
    ),
    "id_is_target": (
        lambda p: p["dataset"].update(id_column="default.payment.next.month"),
        r"id_column 'default.payment.next.month' is also the target",
    ),
    "null_text_value": (
        lambda p: p["dataset"]["target"].update(column=None),
        r"target.column: expected text, got nothing",
    ),
    "negative_label_delay": (
        lambda p: p["dataset"]["batching"].update(label_delay_days=-3),
        r"label_delay_days is -3: labels cannot arrive before their day",
    ),
    "non_finite_number": (
        lambda p: p["validation"].update(max_null_fraction=float("nan")),
        r"validation.max_null_fraction: expected a finite number, got nan",
    ),
    "infinite_range": (
        lambda p: p["validation"]["ranges"].update(AGE=[18, float("inf")]),
        r"validation.ranges.AGE\[1\]: expected a finite number, got inf",
    ),
    "source_uri_with_dotdot": (
        lambda p: p["dataset"]["source"].update(uri="/srv/landing/../../etc/passwd"),
        r"dataset.source.uri '/srv/landing/../../etc/passwd' contains '..'",
    ),
    "source_outside_declared_root": (
        lambda p: p["dataset"]["source"].update(root="/srv/landing"),
        r"dataset.source.uri .* is not under dataset.source.root '/srv/landing'",
    ),
    "zero_row_limit": (
        lambda p: p["dataset"]["source"].update(max_rows=0),
        r"dataset.source.max_rows must be at least 1",
    ),
}


RAW_PARAMS_CASES = {
    "yaml_alias_bomb": (
        lambda text: (
            "bomb: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a]\n"
            "c: [*b, *b, *b, *b, *b, *b, *b, *b]\n" + text
        ),
        r"line 1: YAML anchors/aliases \('&', '\*'\) are not allowed",
    ),
    "oversized_params": (
        lambda text: text + "# " + "x" * (1 << 20) + "\n",
        r"bytes; a params file may have at most 1048576",
    ),
    "params_not_utf8": (lambda text: text.replace("credit_default", "cr\udce9dit", 1), r"not UTF-8 text"),
}


@pytest.mark.parametrize("case", list(RAW_PARAMS_CASES))
def test_hostile_params_files_are_refused_before_parsing(tmp_path, case):
    change, expected = RAW_PARAMS_CASES[case]
    path = write_params(tmp_path)
    path.write_bytes(change(path.read_text()).encode("utf-8", "surrogateescape"))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert re.search(expected, str(info.value)), str(info.value)
    _record({"case": f"params_{case}", "kind": "params", "stage": "load", "message": str(info.value)[:300]})


@pytest.mark.parametrize("case", list(PARAMS_CASES))
def test_malformed_params_are_refused_at_load(tmp_path, case):
    change, expected = PARAMS_CASES[case]
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    change(params)
    path = write_params(tmp_path, params)
    with pytest.raises(ConfigError) as info:
        steps.settings(str(path))  # load_config, then the stages' checks of what they own
    assert re.search(expected, str(info.value)), str(info.value)
    _record({"case": f"params_{case}", "kind": "params", "stage": "load", "message": str(info.value)[:300]})


# Columns the params name are checked against the data when it is first read (loading params reads
# no data file): the day is refused before anything is stored.
HEADER_CASES = {
    "unknown_column": (
        lambda p: p["validation"]["ranges"].update(AGEE=[18, 100]),
        r"validation.ranges names \['AGEE'\].*'AGEE' -> 'AGE'\?",
    ),
    "sensitive_names_no_column": (
        lambda p: p["dataset"].update(sensitive_attributes=["GENDER", "AGE"]),
        r"dataset.sensitive_attributes names \['GENDER'\]",
    ),
}


@pytest.mark.parametrize("case", list(HEADER_CASES))
def test_params_naming_absent_columns_are_refused_at_first_read(tmp_path, case):
    change, expected = HEADER_CASES[case]
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    change(params)
    path = write_params(tmp_path, params)
    with pytest.raises(ConfigError) as info:
        steps.ingest("2025-02-10", str(path))
    assert re.search(expected, str(info.value)), str(info.value)
    storage = open_storage(load_config(path).storage.root)
    assert not storage.list_keys("raw") and not storage.list_keys("staging")
    _record({"case": f"params_{case}", "kind": "params", "stage": "first read", "message": str(info.value)[:300]})


def test_absent_positive_class_is_refused_with_the_values_found(tmp_path):
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["dataset"]["target"]["positive_class"] = "Yes"
    path = write_params(tmp_path, params)
    with pytest.raises(ConfigError, match=r"positive_class 'Yes' never occurs.*values found: \['0', '1'\]") as info:
        steps.ingest("2025-02-10", str(path))
    storage = open_storage(load_config(path).storage.root)
    assert not storage.list_keys("raw") and not storage.list_keys("staging")
    _record(
        {
            "case": "params_absent_positive_class",
            "kind": "params",
            "stage": "first read",
            "message": str(info.value)[:300],
        }
    )


_EXTRA: list[dict] = []

LABEL_DAY = "2025-02-10"  # in the training window: its batch and labels are committed


def _labels_of(frame):
    return frame.reset_index(drop=True)


def _unknown_ids(frame):
    frame.loc[:4, "ID"] = [str(700000 + i) for i in range(5)]
    return frame


def _two_labels(frame):
    extra = frame.iloc[[0]].copy()
    extra["default.payment.next.month"] = "1" if frame.loc[0, "default.payment.next.month"] == "0" else "0"
    return pd.concat([frame, extra], ignore_index=True)


LABEL_CASES = {
    "labels_for_unknown_ids": (
        _unknown_ids,
        r"5 of \d+ label\(s\) \(\d+\.\d+%\) are for ids the day's batch .* does "
        r"not have; limit 0\.00%",
    ),
    "label_outside_classes": (
        lambda f: _set(f, 2, "default.payment.next.month", "2"),
        r"1 label\(s\) outside the contract's classes \['0', '1'\]",
    ),
    "two_labels_for_one_id": (_two_labels, r"1 id\(s\) carry more than one label"),
    "label_missing": (
        lambda f: _set(f, 3, "default.payment.next.month", ""),
        r"1 row\(s\) have no value in target column",
    ),
}


@pytest.mark.parametrize("case", list(LABEL_CASES))
def test_bad_labels(world, case):
    """Labels pass a contract of their own: quarantined, the committed labels stay as they were."""
    change, expected = LABEL_CASES[case]
    storage = world["storage"]
    labels_key = layout.labels_partition("credit_default", _d(LABEL_DAY))
    labels_before = storage.read_manifest(labels_key)["publish_id"]
    raw_before, preds_before, quarantined_before = _state(world)
    _deliver(world, {"delivery.csv": _csv(change(_labels_of(world["by_day"][LABEL_DAY].copy())))}, LABEL_DAY)
    from pipeline.data.ingest import ingest_labels

    try:
        ingest_labels(load_config(world["params"]), storage, _d(LABEL_DAY), as_of=_d(GOOD_DAY))
        message = "no error"
    except Exception as exc:  # noqa: BLE001 - the message is what is asserted
        message = f"{type(exc).__name__}: {exc}"
    finally:
        _deliver(world, {"delivery.csv": _csv(world["by_day"][LABEL_DAY])}, LABEL_DAY)
    assert message.startswith("LabelsRejected") and re.search(expected, message), message
    assert storage.read_manifest(labels_key)["publish_id"] == labels_before, "committed labels changed"
    raw_after, preds_after, quarantined_after = _state(world)
    assert (raw_after, preds_after) == (raw_before, preds_before)
    assert quarantined_after == quarantined_before + 1
    latest = steps.quarantine_list(params=str(world["params"]))[-1]
    assert latest["day"] == LABEL_DAY and latest["stage"] == "labels"
    world["results"].append({"case": case, "kind": "labels", "stage": "labels", "message": message[:300]})


def test_labels_are_never_published_for_a_later_day(world):
    from pipeline.core.errors import LabelsNotAvailable
    from pipeline.data.ingest import ingest_labels, publish_labels

    config = load_config(world["params"])
    with pytest.raises(LabelsNotAvailable, match=r"arrive on 2025-03-17, after 2025-03-02") as info:
        ingest_labels(config, world["storage"], _d("2025-03-03"), as_of=_d(GOOD_DAY))
    with pytest.raises(LabelsNotAvailable, match=r"cannot be published as of 2025-03-02 \(a later day\)"):
        publish_labels(config, world["storage"], _d("2025-03-03"), pd.DataFrame(), None, as_of=_d(GOOD_DAY))
    assert not world["storage"].partition_exists(layout.labels_partition("credit_default", _d("2025-03-03")))
    world["results"].append(
        {"case": "labels_for_a_later_day", "kind": "labels", "stage": "load", "message": str(info.value)}
    )


def test_non_finite_batch_fails_the_suite(world):
    """Defence in depth: a batch that reaches the audit with ±inf (a simulated delivery, bypassing
    the typing) fails the contract's finiteness expectation and is quarantined."""
    from pipeline.data import contract as contracts
    from pipeline.data.ingest import publish_batch

    config = load_config(world["params"])
    storage = world["storage"]
    raw_before, preds_before, quarantined_before = _state(world)
    frame = storage.read_partition(layout.raw_partition("credit_default", _d(GOOD_DAY))).to_pandas()
    frame.loc[0, "BILL_AMT2"] = float("inf")
    frame.loc[1, "PAY_AMT3"] = float("-inf")
    schema = contracts.require(config, storage).schema
    staged = publish_batch(config, storage, _d(GOOD_DAY), frame, schema, source="test")
    with pytest.raises(Exception) as info:
        steps.validate(GOOD_DAY, str(world["params"]), delivery_id=staged["delivery_id"])
    message = str(info.value)
    assert "expect_column_values_to_be_between(column=BILL_AMT2): 1 of" in message, message
    assert "expect_column_values_to_be_between(column=PAY_AMT3): 1 of" in message, message
    raw_after, preds_after, quarantined_after = _state(world)
    assert (raw_after, preds_after, quarantined_after) == (raw_before, preds_before, quarantined_before + 1)
    world["results"].append(
        {"case": "non_finite_batch_at_audit", "kind": "delivery", "stage": "validate", "message": message[:300]}
    )


def _corrupt(storage, key: str, change) -> bytes:
    before = storage.read_bytes(key)
    storage.write_bytes(key, change(before))
    return before


ARTEFACT_CASES = {
    "raw_manifest_lists_a_missing_file": (
        "raw",
        lambda m: {**m, "files": m["files"] + ["part-99999.parquet"]},
        r"ArtefactError: .*raw/credit_default/dt=2025-03-02: its manifest lists part-99999.parquet, which is missing",
    ),
    "raw_manifest_row_count_disagrees": (
        "raw",
        lambda m: {**m, "row_count": m["row_count"] + 7},
        r"ArtefactError: .*dt=2025-03-02: its files hold (\d+) rows but its manifest says \d+",
    ),
    "unsigned_model": (
        "model",
        lambda m: {k: v for k, v in m.items() if k != "signature"},
        r"SignatureError: model credit_default version \S+ .* is not signed; refusing to load it",
    ),
    "model_manifest_rewritten": (
        "model",
        lambda m: {**m, "artifact_bytes": m["artifact_bytes"] + 1},
        r"SignatureError: model credit_default version \S+ .*: the signature does not match",
    ),
}


@pytest.mark.parametrize("case", list(ARTEFACT_CASES))
def test_bad_artefacts(world, case):
    from pipeline.model import registry

    which, change, expected = ARTEFACT_CASES[case]
    storage = world["storage"]
    if which == "raw":
        key = f"{layout.raw_partition('credit_default', _d(GOOD_DAY))}/_manifest.json"
    else:
        version = registry.champion_version(storage, "credit_default")
        key = f"{layout.model_version('credit_default', version)}/manifest.json"
    preds_before = storage.read_manifest(layout.predictions_partition("credit_default", _d(GOOD_DAY)))["publish_id"]
    original = _corrupt(storage, key, lambda b: json.dumps(change(json.loads(b))).encode())
    try:
        import pipeline.model.score as score_module

        score_module._MODELS.clear()  # a fresh worker: nothing loaded before the damage
        try:
            steps.score(GOOD_DAY, str(world["params"]))
            message = "no error"
        except Exception as exc:  # noqa: BLE001
            message = f"{type(exc).__name__}: {exc}"
    finally:
        storage.write_bytes(key, original)
    assert re.search(expected, message), message
    assert (
        storage.read_manifest(layout.predictions_partition("credit_default", _d(GOOD_DAY)))["publish_id"]
        == preds_before
    )
    _record({"case": case, "kind": "artefact", "stage": "score", "message": message[:300]})


class _Malicious:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):  # unpickling this runs open(marker, "w"): proof that the pickle executed
        return (open, (self.marker, "w"))


def test_tampered_model_with_rewritten_hash_never_unpickles(world, tmp_path):
    """Replace the champion's artifact with a malicious pickle and rewrite its sha256 and size in
    the manifest, as anyone with write access to storage could: loading refuses it before
    unpickling (the signature is under a key storage does not hold), and the marker never appears."""
    import hashlib
    import pickle

    import pipeline.model.score as score_module
    from pipeline.model import registry

    storage = world["storage"]
    version = registry.champion_version(storage, "credit_default")
    base = layout.model_version("credit_default", version)
    marker = tmp_path / "pwned"
    payload = pickle.dumps(_Malicious(str(marker)))
    pickle.loads(payload)  # the payload works: unpickling it creates the marker
    assert marker.exists()
    marker.unlink()
    artifact, manifest = storage.read_bytes(f"{base}/model.joblib"), storage.read_bytes(f"{base}/manifest.json")
    rewritten = {
        **json.loads(manifest),
        "artifact_sha256": hashlib.sha256(payload).hexdigest(),
        "artifact_bytes": len(payload),
    }
    storage.write_bytes(f"{base}/model.joblib", payload)
    storage.write_bytes(f"{base}/manifest.json", json.dumps(rewritten).encode())
    score_module._MODELS.clear()
    try:
        with pytest.raises(
            Exception,
            match=rf"model credit_default version {version} .*the signature does not "
            r"match.*Refusing to load it",
        ) as info:
            registry.load_model(storage, "credit_default", version)
        with pytest.raises(Exception, match="the signature does not match"):
            steps.score(GOOD_DAY, str(world["params"]))
        assert not marker.exists(), "the malicious pickle ran"
    finally:
        storage.write_bytes(f"{base}/model.joblib", artifact)
        storage.write_bytes(f"{base}/manifest.json", manifest)
    registry.load_model(storage, "credit_default", version)  # restored: loads again
    _record(
        {
            "case": "tampered_model_hash_rewritten",
            "kind": "artefact",
            "stage": "load",
            "message": f"{type(info.value).__name__}: {info.value}"[:300],
        }
    )


def test_s3_outage_is_one_line_at_the_cli(world, tmp_path):
    """Storage down: the CLI prints one line naming the object and the cause, no traceback."""
    import os
    import socket
    import subprocess
    import sys

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed once the block ends: connections are refused
    env = {
        **os.environ,
        "PIPELINE_STORAGE_URI": "s3://down-bucket/pipeline",
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_ACCESS_KEY_ID": "x",
        "AWS_SECRET_ACCESS_KEY": "y",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    done = subprocess.run(
        [sys.executable, "-m", "pipeline", "--params", str(world["params"]), "score", "--date", GOOD_DAY],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert done.returncode == 2, done.stderr[-2000:]
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert "Traceback" not in done.stderr, done.stderr[-2000:]
    assert len(errors) == 1 and re.search(
        r"S3 \w+ of s3://down-bucket/pipeline/\S+ failed: EndpointConnectionError", errors[0]
    ), done.stderr[-2000:]
    _record({"case": "s3_endpoint_down_cli", "kind": "storage", "stage": "cli", "message": errors[0][:300]})


def _record(entry: dict) -> None:
    _EXTRA.append(entry)


def test_summary_and_committed_suite_unchanged(world):
    """Runs last in this module: the suites are byte-identical, and the counts are written."""
    assert world["suite"].read_bytes() == world["suite_bytes"]
    assert (ROOT / "great_expectations/expectations/credit_default_raw_batch.json").read_bytes() == world[
        "committed_suite"
    ]
    results = world["results"] + _EXTRA
    summary = {
        "cases": len(results),
        "by_kind": {
            k: sum(r["kind"] == k for r in results) for k in ("delivery", "labels", "params", "artefact", "storage")
        },
        "by_stage": {s: sum(r["stage"] == s for r in results) for s in sorted({r["stage"] for r in results})},
        "results": results,
    }
    SUMMARY.parent.mkdir(parents=True, exist_ok=True)
    SUMMARY.write_text(json.dumps(summary, indent=2))
    assert summary["by_kind"]["delivery"] >= len(DELIVERY_CASES)
    assert summary["cases"] >= 45, summary["cases"]
