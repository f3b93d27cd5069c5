"""docker-compose.yaml checked statically (no Docker engine runs here)."""
import json
import re
import shutil
import subprocess

import pytest
import yaml

from pipeline.config import load_config
from conftest import ROOT

AIRFLOW_SERVICES = ["airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer",
                    "airflow-worker", "airflow-init"]


@pytest.fixture(scope="module")
def compose():
    return yaml.safe_load((ROOT / "docker-compose.yaml").read_text())


def test_every_service_can_start(compose):
    services = compose["services"]
    assert {"postgres", "redis", "minio", "minio-init", *AIRFLOW_SERVICES} <= set(services)
    for name, svc in services.items():
        assert "image" in svc or "build" in svc, f"{name} has neither image nor build"
    for name in ("postgres", "redis", "minio"):
        assert "healthcheck" in services[name], f"{name} needs a healthcheck for depends_on"
    for name in AIRFLOW_SERVICES:
        deps = services[name]["depends_on"]
        assert deps["postgres"]["condition"] == "service_healthy"
        assert deps["redis"]["condition"] == "service_healthy"
        assert deps["minio-init"]["condition"] == "service_completed_successfully"
        assert services[name]["build"]["context"] == "."
    assert services["airflow-worker"]["command"] == "celery worker"
    assert (ROOT / "Dockerfile").exists()


def test_env_wiring_matches_the_code(compose):
    env = compose["services"]["airflow-scheduler"]["environment"]
    config = load_config(ROOT / "params.yaml")
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    conn_var = f"AIRFLOW_CONN_{config.storage.aws_conn_id.upper()}"
    conn = json.loads(re.sub(r"\$\{(\w+):-([^}]*)\}", r"\2", env[conn_var]))
    assert conn["extra"]["endpoint_url"] == "http://minio:9000"
    bucket = env["PIPELINE_STORAGE_URI"].removeprefix("s3://").split("/")[0]
    init = " ".join(compose["services"]["minio-init"]["entrypoint"].split())
    assert f"local/{bucket}" in init, "minio-init must create the bucket the pipeline uses"
    assert f"s3://{bucket}/" in " ".join(compose["services"]["airflow-init"]["command"])
    assert env["PIPELINE_PARAMS"].startswith("/opt/airflow/project/")
    # Published ports only on loopback.
    for svc in compose["services"].values():
        for port in svc.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), port


@pytest.mark.skipif(not shutil.which("docker-compose"), reason="docker-compose binary not installed")
def test_docker_compose_config_accepts_the_file():
    subprocess.run(["docker-compose", "-f", str(ROOT / "docker-compose.yaml"), "config", "-q"], check=True)
