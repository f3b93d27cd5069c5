"""docker-compose.yaml checked statically (no Docker engine runs here)."""

import json
import re
import shutil
import subprocess

import pytest
import yaml
from conftest import ROOT

from pipeline.core.settings import load_config

AIRFLOW_SERVICES = [
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
    "airflow-worker",
    "airflow-init",
]


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


def test_env_wiring_matches_the_stack_settings(compose):
    """docker-compose.yaml, `make stack` and the stack test share deploy/stack.yaml."""
    settings = yaml.safe_load((ROOT / "deploy" / "stack.yaml").read_text())
    config = load_config(ROOT / "params.yaml")
    assert settings["aws_conn_id"] == config.storage.aws_conn_id
    for name in AIRFLOW_SERVICES:
        env = compose["services"][name]["environment"]
        assert env["AIRFLOW__CORE__EXECUTOR"] == settings["executor"]
        assert env["PIPELINE_STORAGE_URI"] == f"s3://{settings['bucket']}/{settings['storage_prefix']}"
        assert env["PIPELINE_DVC_REMOTE_URL"] == f"s3://{settings['bucket']}/{settings['dvc_prefix']}"
        assert int(env["AIRFLOW__CELERY__WORKER_CONCURRENCY"]) == settings["worker_concurrency"]
        assert (
            int(env["AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__VISIBILITY_TIMEOUT"])
            == settings["visibility_timeout_seconds"]
        )
        assert env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"].split(":")[-1] == "admin"
        assert settings["admin_user"] in env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"]
        # Credentials only in the Airflow connection: no AWS key variables anywhere.
        assert not {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL"} & set(env)
        conn = json.loads(
            re.sub(r"\$\{(\w+):-([^}]*)\}", r"\2", env[f"AIRFLOW_CONN_{settings['aws_conn_id'].upper()}"])
        )
        assert conn["extra"]["endpoint_url"] == "http://minio:9000"
        assert conn["extra"]["region_name"] == settings["region"]
        assert env["PIPELINE_PARAMS"].startswith("/opt/airflow/project/")
        assert (
            int(env["AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT"])
            == settings["task_heartbeat_timeout_seconds"]
        )
        assert (
            int(env["AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL"])
            == settings["heartbeat_check_interval_seconds"]
        )
        assert settings["task_heartbeat_timeout_seconds"] + settings["heartbeat_check_interval_seconds"] <= 90
        assert int(env["AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT"]) == settings["task_queued_timeout_seconds"]
        assert (
            int(env["AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT_CHECK_INTERVAL"])
            == settings["task_queued_timeout_check_interval_seconds"]
        )
        # The model signing key reaches every Airflow process through the connection params name.
        signing = json.loads(re.sub(r"\$\{(\w+):-([^}]*)\}", r"\2", env["AIRFLOW_CONN_PIPELINE_SIGNING"]))
        assert len(signing["password"]) >= 16 and "PIPELINE_SIGNING_KEY" in env["AIRFLOW_CONN_PIPELINE_SIGNING"]
        assert str(settings["api_port"]) in env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"]
    init = " ".join(compose["services"]["minio-init"]["entrypoint"].split())
    assert f"local/{settings['bucket']}" in init, "minio-init must create the bucket the pipeline uses"
    assert f"127.0.0.1:{settings['api_port']}:8080" in compose["services"]["airflow-apiserver"]["ports"]
    assert compose["services"]["airflow-worker"]["command"] == "celery worker"
    # Everything needs a healthcheck, as in Airflow's official file.
    for name in (
        "postgres",
        "redis",
        "minio",
        "airflow-apiserver",
        "airflow-scheduler",
        "airflow-dag-processor",
        "airflow-triggerer",
        "airflow-worker",
    ):
        assert "healthcheck" in compose["services"][name], name


def test_stack_script_uses_the_same_settings():
    import stack

    assert stack.storage_uri() == "s3://{bucket}/{storage_prefix}".format(**stack.SETTINGS)
    assert stack.dvc_remote_uri() == "s3://{bucket}/{dvc_prefix}".format(**stack.SETTINGS)
    stack_env_keys = set(
        re.findall(r'"(AIRFLOW__[A-Z_]+|PIPELINE_[A-Z_]+)"', (ROOT / "scripts" / "stack.py").read_text())
    )
    compose_env = yaml.safe_load((ROOT / "docker-compose.yaml").read_text())["x-airflow-common"]["environment"]
    shared = {
        "AIRFLOW__CORE__EXECUTOR",
        "PIPELINE_STORAGE_URI",
        "PIPELINE_DVC_REMOTE_URL",
        "AIRFLOW__CELERY__WORKER_CONCURRENCY",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL",
        "AIRFLOW__CELERY__BROKER_URL",
        "AIRFLOW__CELERY__RESULT_BACKEND",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
        "AIRFLOW__CORE__AUTH_MANAGER",
        "AIRFLOW__API_AUTH__JWT_SECRET",
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT",
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL",
        "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT",
        "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT_CHECK_INTERVAL",
    }
    assert shared <= stack_env_keys and shared <= set(compose_env)


def test_published_ports_only_on_loopback(compose):
    for svc in compose["services"].values():
        for port in svc.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), port


@pytest.mark.skipif(not shutil.which("docker-compose"), reason="docker-compose binary not installed")
def test_docker_compose_config_accepts_the_file():
    subprocess.run(["docker-compose", "-f", str(ROOT / "docker-compose.yaml"), "config", "-q"], check=True)


def test_a_stack_refuses_a_broker_db_with_foreign_keys_and_empties_its_own():
    """Broker hygiene (no Airflow started): a DB holding someone else's keys is refused with a clear
    message; the stack's own DB is emptied completely on release, unacked messages included."""
    import stack

    if stack.unreachable():
        pytest.skip("Redis/PostgreSQL not reachable")
    import redis

    index = stack.free_redis_db()
    client = redis.Redis(host=stack.REDIS_HOST, port=stack.REDIS_PORT, db=index)
    try:
        client.set("someone-elses-key", "1")
        with pytest.raises(RuntimeError, match=rf"Redis DB {index} .* holds 1 key\(s\) .*someone-elses-key"):
            stack.claim_broker_db(index, owner="test")
        assert client.get(stack.OWNER_KEY) is None  # nothing was claimed
        client.flushdb()
        stack.claim_broker_db(index, owner="me")
        # What a killed worker leaves: kombu's unacked hash and index, bindings, a queue.
        client.hset("unacked", "tag", "msg")
        client.zadd("unacked_index", {"tag": 1.0})
        client.sadd("_kombu.binding.default", "x")
        client.lpush("default", "task")
        assert stack.release_broker_db(index, owner="another") == 0 and client.dbsize() == 5
        assert stack.release_broker_db(index, owner="me") == 5 and client.dbsize() == 0
    finally:
        client.flushdb()
