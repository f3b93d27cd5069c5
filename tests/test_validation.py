"""Great Expectations validation against the frozen data contract, write-audit-publish."""

import datetime as dt
import json

import pyarrow as pa
import pytest
from conftest import ROOT, write_params

from pipeline import steps
from pipeline.core import layout
from pipeline.core.errors import ContractError, ValidationFailed
from pipeline.core.settings import load_config
from pipeline.core.storage import open_storage
from pipeline.data.expectations import suite_name

DAY = dt.date(2025, 2, 10)


def test_committed_suite_is_the_contracts_and_is_not_rewritten(tmp_path):
    """great_expectations/ in git is what the contract of the params builds; running changes no file."""
    params = write_params(tmp_path)
    config = load_config(params)
    suite_file = tmp_path / "great_expectations" / "expectations" / f"{suite_name(config)}.json"
    before = suite_file.read_bytes()
    assert before == (ROOT / "great_expectations/expectations" / suite_file.name).read_bytes()
    steps.ingest(DAY, str(params))
    steps.validate(DAY, str(params))
    assert suite_file.read_bytes() == before
    shown = steps.contract_show(str(params))
    assert shown["contract"]["version"] == 1 and shown["params_differ"] == []
    assert (ROOT / "great_expectations" / "checkpoints" / "credit_default_raw_batch_checkpoint.json").exists()


def test_good_delivery_is_staged_then_published_and_recorded(tmp_path):
    params = write_params(tmp_path)
    config = load_config(params)
    storage = open_storage(config.storage.root)
    staged = steps.ingest(DAY, str(params))
    assert not storage.partition_exists(layout.raw_partition("credit_default", DAY))  # not before the audit
    result = steps.validate(DAY, str(params), delivery_id=staged["delivery_id"])
    assert result["success"] and result["expectations_evaluated"] > 50
    record = storage.read_json(layout.validation_record("credit_default", DAY))
    manifest = storage.read_manifest(layout.raw_partition("credit_default", DAY))
    assert record["raw_publish_id"] == manifest["publish_id"] and record["contract"]["version"] == 1
    assert manifest["delivery_id"] == staged["delivery_id"]
    assert result["data_docs"].endswith(".html") and (tmp_path / "great_expectations").as_posix() in result["data_docs"]
    # Readable offline: the page and the index use vendored copies of the CDN assets.
    import pathlib

    for page in (
        pathlib.Path(result["data_docs"]),
        tmp_path / "great_expectations/uncommitted/data_docs/local_site/index.html",
    ):
        html = page.read_text()
        assert "code.jquery.com" not in html and "unpkg.com/bootstrap-table" not in html
        for asset in ("jquery.min.js", "bootstrap.min.css", "bootstrap-table.min.js"):
            (ref,) = {
                part.split('"')[0]
                for part in html.split('src="') + html.split('href="')
                if part.split('"')[0].endswith("/" + asset)
            }
            assert (page.parent / ref).resolve().exists(), ref
    page = pathlib.Path(result["data_docs"])
    _assert_fully_offline(page)
    assert "Data asset: credit_default_raw" in page.read_text()
    assert storage.list_children(layout.staging_day("credit_default", DAY)) == []  # staging cleaned


def test_failed_audit_quarantines_the_delivery_and_keeps_the_committed_partition(tmp_path):
    params = write_params(tmp_path)
    config = load_config(params)
    storage = open_storage(config.storage.root)
    steps.ingest(DAY, str(params))
    steps.validate(DAY, str(params))
    raw_key = layout.raw_partition("credit_default", DAY)
    committed = storage.read_manifest(raw_key)["publish_id"]
    # A re-delivery whose values break the contract (written to staging as ingest would).
    staged = steps.ingest(DAY, str(params))
    key = layout.staging_delivery("credit_default", DAY, staged["delivery_id"])
    frame = storage.read_partition(key).to_pandas()
    frame.loc[0, "AGE"] = 170.0  # out of range (and AGE is sensitive: no value may leak)
    frame.loc[3, "SEX"] = "9"  # unknown category
    frame.loc[4, "LIMIT_BAL"] = 5.0  # out of range, not protected
    storage.write_partition(
        key,
        {"part-00000.parquet": pa.Table.from_pandas(frame, preserve_index=False)},
        manifest={k: v for k, v in storage.read_manifest(key).items() if k not in ("files", "publish_id")},
    )
    with pytest.raises(ValidationFailed) as info:
        steps.validate(DAY, str(params))
    message = str(info.value)
    assert f"expect_column_values_to_be_between(column=AGE): 1 of {len(frame)} value(s) unexpected" in message
    assert "limit 0.00%" in message
    assert "expect_column_values_to_be_in_set(column=SEX): 1 of" in message
    assert f"the committed partition {storage.uri(raw_key)} is unchanged" in message
    assert storage.read_manifest(raw_key)["publish_id"] == committed
    (q,) = steps.quarantine_list(params=str(params))
    assert q["delivery_id"] == staged["delivery_id"] and q["stage"] == "validate"
    assert any("column=AGE" in r for r in q["reasons"])
    q_key = layout.quarantine_delivery("credit_default", DAY, staged["delivery_id"])
    assert storage.read_partition(q_key).num_rows == len(frame)
    result = json.loads(storage.read_partition_file(q_key, "validation_result.json"))
    results = {
        (r["expectation_config"]["type"], r["expectation_config"]["kwargs"].get("column")): r["result"]
        for r in result["great_expectations"]["results"]
    }
    age = results[("expect_column_values_to_be_between", "AGE")]
    assert age["unexpected_count"] == 1 and "partial_unexpected_list" not in age  # sensitive: counts only
    assert results[("expect_column_values_to_be_in_set", "SEX")].get("partial_unexpected_list") is None
    assert results[("expect_column_values_to_be_between", "LIMIT_BAL")]["partial_unexpected_list"] == [5.0]
    page = message.split("failing validation page: ")[1].strip()
    html = open(page).read()
    import pathlib

    _assert_fully_offline(pathlib.Path(page))
    assert "getElementById('option2')" in html and "Failed Only" in html  # opens on the failed expectations
    assert "170" not in html.split("AGE")[1][:3000] if "AGE" in html else True
    for stored in (tmp_path / "great_expectations/uncommitted/validations").rglob("*.json"):
        text = stored.read_text()
        if "170.0" in text:
            pytest.fail(f"{stored} holds a sensitive value")


def test_contract_changes_only_explicitly(tmp_path):
    params = write_params(tmp_path)
    steps.ingest(DAY, str(params))
    assert steps.validate(DAY, str(params))["success"]
    stricter = write_params(tmp_path, validation={"ranges": {"AGE": [18, 30]}})
    with pytest.raises(ContractError, match=r"disagree with data contract v1.*validation.ranges.AGE"):
        steps.ingest(DAY, str(stricter))
    with pytest.raises(ContractError, match="needs a reason"):
        steps.contract_update("", params=str(stricter))
    update = steps.contract_update("only customers under 30 from now on", params=str(stricter))
    assert update["changed"] and update["version"] == 2
    assert any("AGE" in d for d in update["differences"])
    suite = (tmp_path / "great_expectations/expectations/credit_default_raw_batch.json").read_text()
    assert '"max_value": 30' in suite and "credit_default v2" in suite
    steps.ingest(DAY, str(stricter))
    with pytest.raises(ValidationFailed, match=r"column=AGE.*contract v2|contract v2.*column=AGE"):
        steps.validate(DAY, str(stricter))
    history = steps.contract_show(str(stricter), history=True)["versions"]
    assert [v["version"] for v in history] == [1, 2] and history[1]["reason"].startswith("only customers")


def _assert_fully_offline(page) -> None:
    """Every script, stylesheet and image the page loads is a local file that exists (icons and
    charts included); nothing comes from a CDN or GE's web-assets bucket."""
    import re

    html = page.read_text()
    refs = re.findall(r'<(?:script|link|img)[^>]*?(?:src|href)=["\']([^"\']+)["\']', html)
    assert refs
    remote = [r for r in refs if "://" in r]
    assert remote == [], remote
    assert 'crossorigin="anonymous"' not in html  # a file:// page refuses crossorigin loads
    for ref in refs:
        assert (page.parent / ref.split("?")[0]).resolve().exists(), ref
    css = (page.parent / next(r for r in refs if r.endswith("all.min.css"))).resolve()
    font = (css.parent / "../webfonts/fa-solid-900.woff2").resolve()
    assert font.exists(), font  # the status icons' font
