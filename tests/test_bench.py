"""`make bench` at smoke size: every benchmark runs, measures both sides in the same run and
writes its figures (the full-size figures are in benchmarks/results.json and the README)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import ROOT

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_benchmarks_run_at_smoke_size(tmp_path):
    results = tmp_path / "results.json"
    # Timings, not coverage: the benchmark processes run untraced (their code paths are covered by
    # the other tests; traced, the smoke run took 6 minutes instead of 1).
    env = {k: v for k, v in os.environ.items() if not k.startswith("COVERAGE_PROCESS")}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "run.py"), "--smoke"],
        env={**env, "BENCH_RESULTS": str(results)},
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    figures = json.loads(results.read_text())
    assert set(figures) == {"drift_stats", "imports", "ingest", "scoring", "training_dag"}
    for side in ("ours", "baseline_naive_scipy"):
        assert figures["drift_stats"][side]["seconds"] > 0 and figures["drift_stats"][side]["peak_rss_mb"] > 0
    assert figures["drift_stats"]["ours"]["statistics"] == 20 * 3 + 5 * 2  # psi, ks, wasserstein; js, chi-square
    ingest = figures["ingest"]
    assert ingest["window_ingest"]["rows"] > 0 and ingest["baseline_pyarrow_read_csv"]["rows"] == ingest["source_rows"]
    for day in figures["scoring"]["days"].values():
        assert day["ours"]["rows"] == day["in_memory_predict_proba"]["rows"] == day["minimal_script"]["rows"]
        assert day["mapped_1_at_a_time"]["rows"] == day["mapped_2_at_a_time"]["rows"] == day["ours"]["rows"]
    dag = figures["training_dag"]["dag_test"]
    assert dag["state"] == "success" and set(dag["task_seconds"]) >= {"ingest", "validate", "train", "register"}
    imports = figures["imports"]
    assert imports["cli_help_seconds"] > 0 and 0 < imports["score_import_share"] < 1
    assert "pipeline.model.score" in imports["score_heaviest_imports_seconds"]  # the step's own import chain
    assert 0 < sum(imports["score_heaviest_imports_seconds"].values()) <= imports["score_import_seconds"] + 0.005
    assert "| benchmark | ours | baseline |" in proc.stdout  # the README's table
