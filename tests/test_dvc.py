"""DVC tracking of the training snapshot inside a git clone of this project, so the
project's own .gitignore and .dvc/config are what DVC sees (a --no-scm repo would not
catch, e.g., a git-ignored dvc.lock, which makes DVC refuse to work)."""

import subprocess

import pytest
import yaml
from conftest import ROOT, write_params

from pipeline.core.settings import load_config
from pipeline.data.snapshot import track_with_dvc


@pytest.fixture
def clone(tmp_path):
    if subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True).returncode:
        pytest.skip("not a git checkout")
    target = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(target)], check=True)
    return target


def test_snapshot_is_pushed_from_a_workspace_of_its_own(clone, tmp_path, monkeypatch):
    """Training never runs `dvc add` in the checkout: no DVC lock to share, no dirty data.dvc."""
    monkeypatch.delenv("DVC_STAGE", raising=False)
    config = load_config(
        write_params(tmp_path, dvc={"enabled": True, "repo_dir": str(clone), "push": True, "snapshot_dir": "data"})
    )
    meta = {"snapshot_id": "abc", "sha256": "0" * 64, "as_of": "2025-03-01", "window": ["a", "b"], "rows": 1}
    result = track_with_dvc(config, b"PAR1 not really parquet", meta)
    recorded = yaml.safe_load(result["dvc_file_content"])
    assert result["md5"] == recorded["outs"][0]["md5"] and recorded["outs"][0]["path"] == "data"
    assert result["pushed"] is True and result["remote"] == str(clone / ".dvc-remote")
    md5 = result["md5"]
    assert (clone / ".dvc-remote" / "files" / "md5" / md5[:2] / md5[2:]).exists(), "nothing was pushed"
    status = subprocess.run(
        ["git", "-C", str(clone), "status", "--porcelain", "--ignored"], capture_output=True, text=True, check=True
    ).stdout
    assert "data.dvc" not in status and " data/" not in status and "!! data" not in status, status


def test_under_dvc_repro_the_snapshot_is_written_but_not_added(clone, tmp_path, monkeypatch):
    monkeypatch.setenv("DVC_STAGE", "train")
    config = load_config(
        write_params(tmp_path, dvc={"enabled": True, "repo_dir": str(clone), "push": True, "snapshot_dir": "data"})
    )
    before = (clone / "data.dvc").read_text()
    meta = {"snapshot_id": "abc", "sha256": "0" * 64, "as_of": "2025-03-01", "window": ["a", "b"], "rows": 1}
    result = track_with_dvc(config, b"bytes", meta)
    assert "md5" not in result and "dvc add" in result["note"]
    assert (clone / "data" / "credit_default" / "training.parquet").read_bytes() == b"bytes"
    assert (clone / "data.dvc").read_text() == before


@pytest.mark.e2e
@pytest.mark.slow
def test_concurrent_trainings_then_dvc_restore_in_a_clean_clone(clone, tmp_path):
    """Two training runs at once share the checkout and the remote: both finish, no DVC lock
    error, the checkout stays clean; in another clean clone, `dvc-restore` + `dvc pull` bring back
    each model's snapshot (md5 and sha256 equal to its manifest's)."""
    import json
    import os
    import sys

    from pipeline.core.storage import open_storage
    from pipeline.model import registry

    remote = tmp_path / "remote"
    runs = []
    for name, as_of in (("a", "2025-03-01"), ("b", "2025-03-05")):
        params = write_params(
            tmp_path / name,
            training={"window_days": 8, "holdout_days": 2, "cv_folds": 3, "estimator_params": {"max_iter": 30}},
            dvc={"enabled": True, "repo_dir": str(clone), "push": True, "remote_url": str(remote)},
        )
        log = open(tmp_path / f"{name}.log", "wb")
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "pipeline",
                "--params",
                str(params),
                "--out",
                str(tmp_path / f"{name}.json"),
                "run-training",
                "--as-of",
                as_of,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PIPELINE_TASKS_PER_MACHINE": "2"},
        )
        runs.append((name, params, proc, log))
    versions = {}
    for name, params, proc, log in runs:
        assert proc.wait(timeout=600) == 0, (tmp_path / f"{name}.log").read_text()[-3000:]
        log.close()
        text = (tmp_path / f"{name}.log").read_text()
        assert "acquire lock" not in text.lower() and "LockError" not in text, text[-3000:]
        storage = open_storage(str(tmp_path / name / "storage"))
        version = json.loads((tmp_path / f"{name}.json").read_text())["train"]["version"]
        versions[name] = (params, registry.read_manifest(storage, "credit_default", version))
    assert versions["a"][1]["data"]["dvc"]["md5"] != versions["b"][1]["data"]["dvc"]["md5"]
    dirty = subprocess.run(
        ["git", "-C", str(clone), "status", "--porcelain"], capture_output=True, text=True, check=True
    ).stdout
    assert dirty == "", f"training left the checkout dirty: {dirty}"

    fresh = tmp_path / "fresh"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(fresh)], check=True)
    for name, (_params, manifest) in versions.items():
        restore_params = write_params(
            tmp_path / f"restore-{name}",
            storage={"root": str(tmp_path / name / "storage")},
            dvc={"enabled": True, "repo_dir": str(fresh), "remote_url": str(remote)},
        )
        out = subprocess.run(
            [sys.executable, "-m", "pipeline", "--params", str(restore_params), "dvc-restore", manifest["version"]],
            capture_output=True,
            text=True,
        )
        assert out.returncode == 0, out.stderr[-3000:]
        restored = json.loads(out.stdout)
        assert restored["md5"] == manifest["data"]["dvc"]["md5"] and restored["dvc_status_clean"]
        assert restored["sha256"] == manifest["data"]["snapshot_sha256"]
        on_disk = yaml.safe_load((fresh / "data.dvc").read_text())["outs"][0]["md5"]
        assert on_disk == manifest["data"]["dvc"]["md5"]


@pytest.mark.e2e
@pytest.mark.slow
def test_dvc_repro_runs_the_pipeline_without_airflow(clone, tmp_path):
    """`dvc repro` in a clean clone: every stage runs and the last one scores the demo days."""
    import json
    import os
    import sys
    from pathlib import Path

    params = write_params(
        tmp_path / "run",
        training={"window_days": 16, "holdout_days": 4, "cv_folds": 3, "estimator_params": {"max_iter": 40}},
        demo={"train_as_of": "2025-03-01", "score_days": ["2025-03-02"]},
    )
    env = {
        **os.environ,
        "PIPELINE_PARAMS": str(params),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    }
    done = subprocess.run([sys.executable, "-m", "dvc", "repro"], cwd=clone, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    for stage in ("ingest", "validate", "train", "evaluate", "gate", "score"):
        assert f"Running stage '{stage}'" in done.stdout
    gate = json.loads((clone / "reports/dvc/gate.json").read_text())
    assert gate["gate"]["passed"] and gate["register"]["promoted"]
    (scored,) = json.loads((clone / "reports/dvc/score.json").read_text())
    assert scored["rows"] > 0 and scored["model_version"] == gate["register"]["champion"]
