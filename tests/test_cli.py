"""The CLI prints tables people can read for the listing commands, JSON with --json, and a latest-N limit."""

from __future__ import annotations

import json

from conftest import write_params

from pipeline import cli, steps


def test_listing_commands_print_tables_and_json_on_request(tmp_path, capsys):
    params = str(write_params(tmp_path))
    steps.ingest("2025-01-05", params)  # resolves and stores the data contract
    for day in ("2025-01-06", "2025-01-07", "2025-01-08"):
        steps.ingest(day, params)

    assert cli.main(["--params", params, "contract", "show"]) == 0
    table = capsys.readouterr().out
    assert "credit_default data contract v1" in table and "LIMIT_BAL" in table and "range [1000.0" in table
    assert "params.yaml agrees with this contract." in table
    assert not table.lstrip().startswith("{")

    assert cli.main(["--params", params, "--json", "contract", "show"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["contract"]["version"] == 1 and data["params_differ"] == []

    from pipeline.ops import audit
    from pipeline.storage import open_storage

    storage = open_storage(str(tmp_path / "storage"))
    for i in range(5):
        audit.record(storage, "gate", f"decision {i}", why="test")
    assert cli.main(["--params", params, "--limit", "2", "audit", "list", "--kind", "gate"]) == 0
    shown = capsys.readouterr().out
    assert "decision 4" in shown and "decision 3" in shown and "decision 2" not in shown
    assert "2 of 5" in shown  # the caption says what was left out

    assert cli.main(["--params", params, "--json", "audit", "list", "--kind", "gate"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 5

    # Commands without a table keep printing JSON (scripts and DVC stages parse it).
    assert cli.main(["--params", params, "gx-init"]) == 0
    assert json.loads(capsys.readouterr().out)["suite"] == "credit_default_raw_batch"
