"""DVC tracking of the training snapshot inside a git clone of this project, so the
project's own .gitignore and .dvc/config are what DVC sees (a --no-scm repo would not
catch, e.g., a git-ignored dvc.lock, which makes DVC refuse to work)."""
import subprocess

import pytest
import yaml

from pipeline.config import load_config
from pipeline.snapshot import track_with_dvc
from conftest import ROOT, write_params


@pytest.fixture
def clone(tmp_path):
    if subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True).returncode:
        pytest.skip("not a git checkout")
    target = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(target)], check=True)
    return target


def test_snapshot_is_added_and_pushed_in_the_project_repo(clone, tmp_path, monkeypatch):
    monkeypatch.delenv("DVC_STAGE", raising=False)
    config = load_config(write_params(tmp_path, dvc={"enabled": True, "repo_dir": str(clone), "push": True,
                                                     "snapshot_dir": "data"}))
    meta = {"snapshot_id": "abc", "sha256": "0" * 64, "as_of": "2025-03-01", "window": ["a", "b"], "rows": 1}
    result = track_with_dvc(config, b"PAR1 not really parquet", meta)
    dvc_file = yaml.safe_load((clone / "data.dvc").read_text())
    assert result["md5"] == dvc_file["outs"][0]["md5"] and result["pushed"] is True
    assert any((clone / ".dvc-remote").rglob("*")), "nothing was pushed to the default remote"
    changed = subprocess.run(["git", "-C", str(clone), "status", "--porcelain"], capture_output=True,
                             text=True, check=True).stdout.split("\n")
    assert [line for line in changed if line.strip()] == [" M data.dvc"]  # data/ itself stays out of git


def test_under_dvc_repro_the_snapshot_is_written_but_not_added(clone, tmp_path, monkeypatch):
    monkeypatch.setenv("DVC_STAGE", "train")
    config = load_config(write_params(tmp_path, dvc={"enabled": True, "repo_dir": str(clone), "push": True,
                                                     "snapshot_dir": "data"}))
    before = (clone / "data.dvc").read_text()
    meta = {"snapshot_id": "abc", "sha256": "0" * 64, "as_of": "2025-03-01", "window": ["a", "b"], "rows": 1}
    result = track_with_dvc(config, b"bytes", meta)
    assert "md5" not in result and "dvc add" in result["note"]
    assert (clone / "data" / "credit_default" / "training.parquet").read_bytes() == b"bytes"
    assert (clone / "data.dvc").read_text() == before


@pytest.mark.e2e
def test_dvc_repro_runs_the_pipeline_without_airflow(clone, tmp_path):
    """`dvc repro` in a clean clone: every stage runs and the last one scores the demo days."""
    import json
    import os
    import sys
    from pathlib import Path

    params = write_params(tmp_path / "run", training={"window_days": 16, "holdout_days": 4, "cv_folds": 3,
                                                      "estimator_params": {"max_iter": 40}},
                          demo={"train_as_of": "2025-03-01", "score_days": ["2025-03-02"]})
    env = {**os.environ, "PIPELINE_PARAMS": str(params),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run([sys.executable, "-m", "dvc", "repro"], cwd=clone, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    for stage in ("ingest", "validate", "train", "evaluate", "gate", "score"):
        assert f"Running stage '{stage}'" in done.stdout
    gate = json.loads((clone / "reports/dvc/gate.json").read_text())
    assert gate["gate"]["passed"] and gate["register"]["promoted"]
    (scored,) = json.loads((clone / "reports/dvc/score.json").read_text())
    assert scored["rows"] > 0 and scored["model_version"] == gate["register"]["champion"]
