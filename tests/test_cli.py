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

    from pipeline.core.storage import open_storage
    from pipeline.ops import audit

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


def test_long_work_reports_progress_through_the_installed_sink(tmp_path):
    """The CLI installs progress bars; any sink sees the window's days one by one, then the end."""
    from pipeline.ops import progress

    class Recorder:
        def __init__(self):
            self.events = []

        def start(self, task, total):
            self.events.append(("start", task, total))

        def advance(self, task, description):
            self.events.append(("advance", task, description))

        def finish(self, task):
            self.events.append(("finish", task))

    params = str(write_params(tmp_path, training={"window_days": 4, "holdout_days": 1}))
    recorder = Recorder()
    progress.install(recorder)
    try:
        steps.ingest_window("2025-02-01", params)
    finally:
        progress.install(progress._Nothing())
    assert recorder.events[0] == ("start", "ingest window", 4)
    assert [e[2] for e in recorder.events if e[0] == "advance"] == [
        "2025-01-15",
        "2025-01-16",
        "2025-01-17",
        "2025-01-18",
    ]
    assert recorder.events[-1] == ("finish", "ingest window")
    bars = progress.RichBars()  # the terminal sink runs the same protocol
    bars.start("ingest window", 2)
    bars.advance("ingest window", "2025-01-15")
    assert bars.progress.tasks[0].completed == 1 and bars.progress.tasks[0].total == 2
    bars.finish("ingest window")
