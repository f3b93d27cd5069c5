"""The privacy gate end to end: a dataset whose rows carry names, e-mail addresses and phone numbers
(declared as PII) runs through training, scoring, a quarantined delivery, an alert and the drift
monitor. Every output of the run outside raw/ (storage, Data Docs, validation results, logs,
reports, the alert, the audit trail) is searched for those values: none is found. Raw holds
keyed hashes, never the values."""

from __future__ import annotations

import gzip
import io
import json
import logging
import re
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml
from conftest import ROOT, write_params

from pipeline import steps
from pipeline.core import layout
from pipeline.core.settings import load_config
from pipeline.core.storage import open_storage

PII = re.compile(r"pii\.example|Zyxa Q\d|\+44 7700 9\d")
PII_COLUMNS = ["FULL_NAME", "EMAIL", "PHONE"]


def _source_with_pii(path: Path, bad_age_id: int | None = None) -> None:
    frame = pd.read_csv(ROOT / "sources/credit_default/UCI_Credit_Card.csv.gz", dtype=str, keep_default_na=False)
    ids = frame["ID"].astype(int)
    frame.insert(1, "FULL_NAME", [f"Zyxa Q{i}name" for i in ids])
    frame.insert(2, "EMAIL", [f"zq{i}.person@pii.example" for i in ids])
    frame.insert(3, "PHONE", [f"+44 7700 9{i:05d}" for i in ids])
    if bad_age_id is not None:
        frame.loc[frame["ID"] == str(bad_age_id), "AGE"] = "170"
    path.write_bytes(gzip.compress(frame.to_csv(index=False).encode(), compresslevel=1))


def _text_of(path: Path) -> str:
    """What a person or a tool could read in a file: Parquet decoded (values are compressed), else bytes."""
    if path.suffix == ".parquet":
        table = pq.read_table(path)
        return "\n".join(str(v) for col in table.columns for v in col.to_pylist())
    return path.read_bytes().decode("utf-8", errors="ignore")


def _leaks(root: Path, skip: tuple[str, ...] = ()) -> list[str]:
    found = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root).as_posix()
        if rel.startswith(skip):
            continue
        match = PII.search(_text_of(path))
        if match:
            found.append(rel)
    return found


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("privacy")
    source = tmp / "customers.csv.gz"
    _source_with_pii(source)
    base = yaml.safe_load((ROOT / "params.yaml").read_text())
    base["dataset"]["source"] = {"uri": str(source), "format": "csv"}
    base["dataset"]["pii_columns"] = PII_COLUMNS
    params = write_params(
        tmp,
        base,
        training={"window_days": 20, "holdout_days": 5, "cv_folds": 3, "estimator_params": {"max_iter": 40}},
        monitoring={"bootstrap_resamples": 200},
    )
    handler = logging.StreamHandler(io.StringIO())
    handler.setLevel(logging.DEBUG)
    logging.getLogger().addHandler(handler)
    old_level = logging.getLogger().level
    logging.getLogger().setLevel(logging.INFO)
    outputs = {}
    try:
        outputs["training"] = steps.run_training("2025-03-01", str(params))
        outputs["scoring"] = [steps.run_scoring(day, str(params)) for day in ("2025-03-02", "2025-03-03")]
        # A delivery that fails its audit: one row of 2025-03-04 has AGE 170.
        config = load_config(params)
        from pipeline.data.source import assign_days, read_source_text

        days = assign_days(config.dataset, read_source_text(config.dataset))
        bad_id = int(read_source_text(config.dataset)["ID"][days.map(str) == "2025-03-04"].iloc[0])
        _source_with_pii(source, bad_age_id=bad_id)
        with pytest.raises(Exception) as failed:
            steps.run_scoring("2025-03-04", str(params))
        from pipeline.ops.alerts import Alert

        alert = Alert(
            dag_id="batch_scoring",
            task_id="validate",
            run_id="privacy",
            partition_date="2025-03-04",
            try_number=1,
            max_tries=1,
            error_type=type(failed.value).__name__,
            summary=str(failed.value),
            links=getattr(failed.value, "links", {}),
        )
        outputs["alert"] = alert.text() + alert.html() + json.dumps(alert.webhook())
        outputs["failure"] = str(failed.value)
        outputs["monitor"] = steps.monitor_drift("2025-03-04", str(params))
    finally:
        logging.getLogger().removeHandler(handler)
        logging.getLogger().setLevel(old_level)
    config = load_config(params)
    return {
        "tmp": tmp,
        "config": config,
        "params": params,
        "outputs": outputs,
        "log": handler.stream.getvalue(),
        "storage": open_storage(config.storage.root),
    }


def test_the_run_happened(run):
    outputs, storage = run["outputs"], run["storage"]
    import datetime as dt

    from pipeline.model import registry

    assert registry.champion_version(storage, "credit_default")
    assert storage.partition_exists(layout.predictions_partition("credit_default", dt.date(2025, 3, 3)))
    assert "expect_column_values_to_be_between(column=AGE)" in outputs["failure"]
    assert steps.quarantine_list(params=str(run["params"]))
    assert list(Path(storage.root_uri, "monitoring").rglob("*.html"))  # the drift report exists


def test_raw_holds_keyed_hashes_not_values(run):
    storage = run["storage"]
    import datetime as dt

    raw = storage.read_partition(layout.raw_partition("credit_default", dt.date(2025, 3, 2))).to_pandas()
    for col in PII_COLUMNS:
        assert raw[col].str.match(r"^pii:[0-9a-f]{32}$").all(), col
    assert raw["FULL_NAME"].nunique() == len(raw)  # distinct values keep distinct pseudonyms


def test_no_output_outside_raw_holds_a_pii_value(run):
    root = Path(run["storage"].root_uri)
    assert _leaks(root, skip=("raw/",)) == []
    assert _leaks(root) == []  # and raw itself holds only the keyed hashes
    gx = Path(run["config"].validation.gx_root) / "uncommitted"
    assert list(gx.rglob("*.html")) and _leaks(gx) == []  # Data Docs and stored validation results
    assert not PII.search(run["log"]), PII.search(run["log"])
    assert not PII.search(run["outputs"]["alert"])
    assert not PII.search(json.dumps(steps.audit_list(params=str(run["params"]))))
    assert not PII.search(json.dumps(run["outputs"], default=str))


def test_the_search_finds_what_it_looks_for(run, tmp_path):
    """The same search over the source file and a clear copy finds the values (it can fail)."""
    (tmp_path / "clear.csv").write_text("FULL_NAME,EMAIL\nZyxa Q1name,zq1.person@pii.example\n")
    assert _leaks(tmp_path) == ["clear.csv"]
