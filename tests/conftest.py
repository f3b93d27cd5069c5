"""Shared fixtures: an isolated Airflow home, a real S3 endpoint on loopback, and
params files derived from the project's own, pointing every output at tmp dirs."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT / "plugins"))

import airflow_env  # noqa: E402

# Before anything imports Airflow: a private home with its own SQLite DB.
_AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="pytest-airflow-"))
airflow_env.apply(home=_AIRFLOW_HOME)
os.environ["AIRFLOW_HOME"] = str(_AIRFLOW_HOME)
for _var in (
    "PIPELINE_STORAGE_URI",
    "AWS_ENDPOINT_URL",
    "AWS_PROFILE",
    "PIPELINE_SIGNING_KEYS_PREVIOUS",
    "PIPELINE_SIGNING_KEY_FILE",
):
    os.environ.pop(_var, None)
# Under pytest-xdist the workers share the machine: each task gets its share of the cores
# (pipeline/ops/threads.py), or parallel fits oversubscribe OpenMP and crawl.
if os.environ.get("PYTEST_XDIST_WORKER_COUNT"):
    os.environ.setdefault("PIPELINE_TASKS_PER_MACHINE", os.environ["PYTEST_XDIST_WORKER_COUNT"])
    os.environ.setdefault("OMP_NUM_THREADS", "1")
# The model signing key of this test session (every process the tests start inherits it). Under
# xdist every worker of the run derives the same key from the run's id, so a model one worker
# trained (the shared demo champion) verifies in the others; each run still has its own key.
_RUN_ID = os.environ.get("PYTEST_XDIST_TESTRUNUID")
os.environ["PIPELINE_SIGNING_KEY"] = (
    __import__("hashlib").sha256(f"pipeline-test-signing-key:{_RUN_ID}".encode()).hexdigest()
    if _RUN_ID
    else __import__("secrets").token_hex(32)
)


# The longest files first: under `--dist loadfile` (make test, make test-all) each file runs on one worker (its
# module fixtures are built once), and a long file started last would set the suite's wall time.
LONGEST_FIRST = ("test_stack", "test_alerts", "test_publish_s3", "test_dvc", "test_e2e_local", "test_bench")


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.module.__name__, len(rank)))


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """A migrated metadata DB (dag.test() needs one)."""
    subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=os.environ.copy(),
    )
    return _AIRFLOW_HOME


@pytest.fixture(scope="session")
def dagbag(airflow_db):
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(str(ROOT / "dags"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def s3_server():
    """moto's S3 server on 127.0.0.1: the code under test talks real HTTP to it."""
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def s3_env(s3_server, monkeypatch):
    """Credentials and endpoint through the standard env vars, and a fresh bucket."""
    import uuid

    import boto3

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server)
    bucket = f"test-{uuid.uuid4().hex[:12]}"
    client = boto3.client("s3", endpoint_url=s3_server)
    client.create_bucket(Bucket=bucket)
    return {"endpoint": s3_server, "bucket": bucket, "client": client}


def write_params(tmp_path: Path, base: Path | dict = ROOT / "params.yaml", with_dvc: bool = False, **overrides) -> Path:
    """A params file in tmp_path: the base params with every output in tmp_path.

    `overrides` are merged per top-level section (e.g. training={"window_days": 20}).
    """
    params = yaml.safe_load(base.read_text()) if isinstance(base, Path) else dict(base)
    base_dir = base.parent if isinstance(base, Path) else ROOT
    src = params["dataset"]["source"]["uri"]
    if "://" not in src and not os.path.isabs(src):
        params["dataset"]["source"]["uri"] = str((base_dir / src).resolve())
    params["storage"] = {**params.get("storage", {}), "root": str(tmp_path / "storage")}
    gx_root = tmp_path / "great_expectations"
    committed = ROOT / "great_expectations"
    if not gx_root.exists() and committed.exists() and params["dataset"]["name"] == "credit_default":
        # Start from the committed Data Context, as a deployment does.
        shutil.copytree(committed, gx_root, ignore=shutil.ignore_patterns("uncommitted", ".pipeline.lock"))
    params["validation"] = {**params.get("validation", {}), "gx_root": str(gx_root)}
    dvc_repo = tmp_path / "dvc_repo"
    if not with_dvc:
        params["dvc"] = {"enabled": False}
    elif not (dvc_repo / ".dvc").exists():
        dvc_repo.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "dvc", "init", "--no-scm", "-q"], cwd=dvc_repo, check=True)
        subprocess.run(
            [sys.executable, "-m", "dvc", "remote", "add", "-q", "-d", "local", str(tmp_path / "dvc_remote")],
            cwd=dvc_repo,
            check=True,
        )
    if with_dvc:
        params["dvc"] = {**params.get("dvc", {}), "enabled": True, "repo_dir": str(dvc_repo)}
    for section, values in overrides.items():
        if isinstance(values, dict):
            params[section] = {**params.get(section, {}), **values}
        else:
            params[section] = values
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


# The short training window most tests train on: quick, and still a model the gate accepts.
SMALL_TRAINING = {"window_days": 20, "holdout_days": 5, "cv_folds": 3, "estimator_params": {"max_iter": 60}}


@pytest.fixture(scope="session")
def demo_champion(tmp_path_factory, worker_id) -> Path:
    """The demo champion, trained once per test run (as of 2025-03-01, SMALL_TRAINING): tests that
    need a trained world take a private copy (copy_trained) instead of training. Under xdist the
    first worker that needs it trains it in the run's shared temp dir while the others wait on a
    lock (three workers used to train it three times); it is never written to afterwards."""
    from filelock import FileLock

    from pipeline import steps

    def train(base: Path) -> None:
        params = write_params(base, training=SMALL_TRAINING)
        result = steps.run_training("2025-03-01", str(params))
        assert result["register"]["promoted"], result["register"]

    if worker_id == "master":
        base = tmp_path_factory.mktemp("demo_champion")
        train(base)
        return base
    shared = tmp_path_factory.getbasetemp().parent / "demo_champion"  # one per run, seen by every worker
    with FileLock(f"{shared}.lock"):
        if not (shared / ".trained").exists():
            shutil.rmtree(shared, ignore_errors=True)  # left half-way by a worker that failed
            shared.mkdir()
            train(shared)
            (shared / ".trained").touch()
    return shared


def copy_trained(base: Path, target: Path, **overrides) -> Path:
    """A private copy of a trained world (storage and Data Context) in `target`, with its params
    pointed there; `overrides` are merged per top-level section as in write_params."""
    for name in ("storage", "great_expectations"):
        shutil.copytree(base / name, target / name)
    params = yaml.safe_load((base / "params.yaml").read_text().replace(str(base), str(target)))
    for section, values in overrides.items():
        params[section] = {**params.get(section, {}), **values} if isinstance(values, dict) else values
    path = target / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


@pytest.fixture
def small_params(tmp_path, monkeypatch) -> Path:
    """The demo dataset with a shorter training window, so end-to-end runs stay quick."""
    path = write_params(
        tmp_path,
        with_dvc=True,
        training={"window_days": 20, "holdout_days": 5, "cv_folds": 3, "estimator_params": {"max_iter": 60}},
        demo={"train_as_of": "2025-03-01", "score_days": ["2025-03-02", "2025-03-03"]},
    )
    monkeypatch.setenv("PIPELINE_PARAMS", str(path))
    return path
