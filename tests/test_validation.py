"""Great Expectations validation: the suite comes from config; a bad batch is quarantined."""
import datetime as dt

import pyarrow as pa
import pytest

from pipeline import layout, steps
from pipeline.config import load_config
from pipeline.storage import open_storage
from pipeline.validation import ValidationFailed, ensure_context, suite_name
from conftest import ROOT, write_params

DAY = dt.date(2025, 2, 10)


def test_committed_suite_matches_params_and_is_not_rewritten(tmp_path):
    """great_expectations/ in git is what the params build; running it changes no file."""
    config = load_config(write_params(tmp_path))
    suite_file = tmp_path / "great_expectations" / "expectations" / f"{suite_name(config)}.json"
    before = suite_file.read_bytes()
    from pipeline.source import read_source_text, resolve_schema

    ensure_context(config, resolve_schema(config.dataset, read_source_text(config.dataset)))
    assert suite_file.read_bytes() == before
    assert (ROOT / "great_expectations" / "checkpoints" / "credit_default_raw_batch_checkpoint.json").exists()


def test_good_batch_passes_and_is_recorded(tmp_path, monkeypatch):
    params = write_params(tmp_path)
    steps.ingest(DAY, str(params))
    result = steps.validate(DAY, str(params))
    assert result["success"] and result["expectations_evaluated"] > 50
    config = load_config(params)
    record = open_storage(config.storage.root).read_json(layout.validation_record("credit_default", DAY))
    assert record["success"] and record["rows"] == result["rows"]
    assert (tmp_path / "great_expectations/uncommitted/data_docs/local_site/index.html").exists()


def test_bad_batch_is_quarantined_with_named_expectations(tmp_path):
    params = write_params(tmp_path)
    config = load_config(params)
    storage = open_storage(config.storage.root)
    steps.ingest(DAY, str(params))
    raw_key = layout.raw_partition("credit_default", DAY)
    frame = storage.read_partition(raw_key).to_pandas()
    frame.loc[0, "AGE"] = 170.0          # out of range
    frame.loc[1, "ID"] = frame.loc[2, "ID"]  # duplicate id
    frame.loc[3, "SEX"] = "9"             # unknown category
    storage.write_partition(raw_key, {"part-00000.parquet": pa.Table.from_pandas(frame, preserve_index=False)},
                            manifest=storage.read_manifest(raw_key) | {"files": None})
    with pytest.raises(ValidationFailed) as info:
        steps.validate(DAY, str(params))
    message = str(info.value)
    assert "expect_column_values_to_be_between(column=AGE): 1 unexpected" in message
    assert "expect_column_values_to_be_unique(column=ID)" in message
    assert "expect_column_values_to_be_in_set(column=SEX): 1 unexpected" in message
    q_key = layout.quarantine_partition("credit_default", DAY)
    assert "quarantine/credit_default/dt=2025-02-10" in message
    assert storage.read_partition(q_key).num_rows == len(frame)  # the whole batch, intact
    result = storage.read_partition_file(q_key, "validation_result.json")
    assert b"expect_column_values_to_be_unique" in result
    assert not storage.partition_exists(raw_key)  # nothing downstream can pick it up
    with pytest.raises(ValidationFailed, match="never validated|nothing to validate"):
        steps.validate(DAY, str(params))


def test_changed_config_replaces_suite_and_checkpoint(tmp_path):
    """Tightening a range in params changes the stored suite, and the checkpoint validates with it."""
    from pipeline.validation import run_validation

    params = write_params(tmp_path)
    steps.ingest(DAY, str(params))
    assert steps.validate(DAY, str(params))["success"]
    stricter = write_params(tmp_path, validation={"ranges": {"AGE": [18, 30]}})
    config = load_config(stricter)
    storage = open_storage(config.storage.root)
    manifest = storage.read_manifest(layout.raw_partition("credit_default", DAY))
    from pipeline.source import Schema

    frame = storage.read_partition(layout.raw_partition("credit_default", DAY)).to_pandas()
    (outcome,) = run_validation(config, Schema.from_dict(manifest["schema"]), {"probe": frame}).values()
    assert not outcome.success
    assert [(f["expectation"], f["column"]) for f in outcome.failed] == [("expect_column_values_to_be_between", "AGE")]
    suite = (tmp_path / "great_expectations/expectations/credit_default_raw_batch.json").read_text()
    assert '"max_value": 30' in suite
