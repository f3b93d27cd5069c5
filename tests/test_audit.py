"""The audit trail is tamper-evident: records form a hash chain (with an HMAC under the signing key),
are created with conditional writes, and `audit verify` names the first edited, removed or unlinked
record, on local storage and on S3."""

from __future__ import annotations

import json
import re
import threading

import pytest
from conftest import write_params

from pipeline import cli
from pipeline.core import layout
from pipeline.core.errors import ArtefactError, ConfigError
from pipeline.core.storage import open_storage
from pipeline.ops import audit


@pytest.fixture(params=["local", "s3"])
def trail(request, tmp_path, monkeypatch):
    monkeypatch.setenv("PIPELINE_SIGNING_KEY", "audit-test-key-0123456789abcdef")
    if request.param == "local":
        storage = open_storage(str(tmp_path / "storage"))
    else:
        env = request.getfixturevalue("s3_env")
        storage = open_storage(f"s3://{env['bucket']}/root")
    for i in range(4):
        audit.record(storage, "gate", f"decision {i}", why="test", version=f"v{i}")
    return storage


def _keys(storage):
    (day,) = storage.list_children(layout.audit_day())
    return day, sorted(k for k in storage.list_keys(layout.audit_day(day)) if re.search(r"/\d{6}\.json$", k))


def test_intact_trail_verifies_and_records_link(trail):
    result = audit.verify(trail)
    assert result["records"] == 4 and result["unsigned"] == 0
    day, keys = _keys(trail)
    entries = [trail.read_json(k) for k in keys]
    assert [e["seq"] for e in entries] == [1, 2, 3, 4]
    assert all(b["prev"] == a["hash"] for a, b in zip(entries, entries[1:], strict=False))
    assert result["head"] == trail.uri(keys[-1]) and result["head_hash"] == entries[-1]["hash"]


def test_an_edited_record_is_named(trail):
    day, keys = _keys(trail)
    edited = trail.read_json(keys[1])
    edited["why"] = "nothing to see here"
    trail.write_json(keys[1], edited)
    with pytest.raises(ArtefactError, match=rf"{keys[1].rsplit('/', 1)[-1]} was edited"):
        audit.verify(trail)


def test_an_edit_with_a_recomputed_hash_fails_the_hmac(trail):
    day, keys = _keys(trail)
    edited = trail.read_json(keys[2])
    edited["actor"] = "someone else"
    edited["hash"] = audit._digest(edited)  # what a person with storage access but no key can do
    trail.write_json(keys[2], edited)
    with pytest.raises(ArtefactError) as info:
        audit.verify(trail)
    assert keys[2].rsplit("/", 1)[-1] in str(info.value)  # the next record no longer links, or the hmac fails


def test_a_deleted_record_is_named(trail):
    day, keys = _keys(trail)
    trail.delete_keys([keys[1]])
    with pytest.raises(ArtefactError, match=r"000002\.json is missing"):
        audit.verify(trail)


def test_a_deleted_day_breaks_the_link_of_the_next(tmp_path, monkeypatch):
    monkeypatch.setenv("PIPELINE_SIGNING_KEY", "audit-test-key-0123456789abcdef")
    storage = open_storage(str(tmp_path / "storage"))
    audit.record(storage, "gate", "today")
    (day,) = storage.list_children(layout.audit_day())
    # An earlier day, chained before today's: move today's record after it by hand.
    first = storage.read_json(layout.audit_record(day, 1))
    storage.delete(layout.audit_day(day))
    audit.record(storage, "gate", "earlier")
    earlier = storage.read_json(layout.audit_record(day, 1))
    storage.delete(layout.audit_day(day))
    storage.write_json_if(layout.audit_record("2000-01-01", 1), earlier, None)
    audit.record(storage, "gate", "today, linked to the earlier day")
    assert audit.verify(storage)["records"] == 2
    storage.delete(layout.audit_day("2000-01-01"))
    with pytest.raises(ArtefactError, match=r"audit trail broken before .*000001\.json.*removed"):
        audit.verify(storage)
    assert first["what"] == "today"


def test_concurrent_writers_each_get_a_place_and_the_chain_holds(tmp_path, monkeypatch):
    monkeypatch.setenv("PIPELINE_SIGNING_KEY", "audit-test-key-0123456789abcdef")
    storage = open_storage(str(tmp_path / "storage"))
    threads = [threading.Thread(target=audit.record, args=(storage, "alert", f"writer {i}")) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert audit.verify(storage)["records"] == 8
    assert sorted(r["what"] for r in audit.list_records(storage)) == [f"writer {i}" for i in range(8)]


def test_records_are_never_overwritten(trail):
    day, keys = _keys(trail)
    from pipeline.core.errors import PreconditionFailed

    with pytest.raises(PreconditionFailed):
        trail.write_json_if(keys[0], {"what": "replaced"}, None)


def test_cli_audit_verify_fails_naming_the_record(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PIPELINE_SIGNING_KEY", "audit-test-key-0123456789abcdef")
    params = str(write_params(tmp_path))
    storage = open_storage(str(tmp_path / "storage"))
    for i in range(3):
        audit.record(storage, "promotion", f"move {i}")
    assert cli.main(["--params", params, "audit", "verify"]) == 0
    assert json.loads(capsys.readouterr().out)["records"] == 3
    day, keys = _keys(storage)
    storage.delete_keys([keys[0]])
    assert cli.main(["--params", params, "audit", "verify"]) == 2
    assert "000001.json is missing" in capsys.readouterr().err


def test_a_record_replaced_by_other_json_and_an_unknown_kind_are_named(trail):
    day, keys = _keys(trail)
    with pytest.raises(ConfigError, match="unknown audit record kind 'gates'; known: quarantine, gate"):
        audit.list_records(trail, kind="gates")
    trail.write_json(keys[0], ["not", "a", "record"])
    with pytest.raises(ArtefactError, match=r"000001\.json was edited"):
        audit.verify(trail)


def test_a_record_claiming_an_unknown_key_is_refused(trail):
    """Rewriting a record, its hash and the chain after it, under a made-up key id, is still caught."""
    day, keys = _keys(trail)
    last = trail.read_json(keys[-1])
    last["what"], last["key_id"] = "rewritten", "000000000000"
    last["hash"] = audit._digest(last)
    trail.write_json(keys[-1], last)
    with pytest.raises(ArtefactError, match=r"000004\.json is signed with key '000000000000'"):
        audit.verify(trail)
