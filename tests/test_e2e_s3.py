"""The same pipeline with every artefact on an S3 endpoint (moto server on 127.0.0.1, real HTTP).

Endpoint and credentials reach the tasks only through the Airflow connection
`aws_default`: no AWS_* variables are set, so a task that ignored the connection
would try real AWS and fail.
"""

import json
import uuid

import pytest
from helpers import read_parquet_objects, run_dag

from pipeline.core.settings import load_config
from pipeline.core.storage import open_storage
from pipeline.model import registry

pytestmark = pytest.mark.e2e


@pytest.mark.slow
def test_pipeline_on_s3_through_airflow_connection(dagbag, s3_server, tmp_path, monkeypatch):
    import boto3
    from conftest import write_params

    admin = boto3.client(
        "s3",
        endpoint_url=s3_server,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name="us-east-1",
    )
    # A bucket of its own: other tests (the stack test) leave objects in theirs on this endpoint.
    bucket = f"e2e-{uuid.uuid4().hex[:10]}"
    admin.create_bucket(Bucket=bucket)
    params = write_params(
        tmp_path, training={"window_days": 16, "holdout_days": 4, "cv_folds": 3, "estimator_params": {"max_iter": 40}}
    )
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("PIPELINE_PARAMS", str(params))
    monkeypatch.setenv("PIPELINE_STORAGE_URI", f"s3://{bucket}/prod")
    monkeypatch.setenv(
        "AIRFLOW_CONN_AWS_DEFAULT",
        json.dumps(
            {
                "conn_type": "aws",
                "login": "testing",
                "password": "testing",
                "extra": {"endpoint_url": s3_server, "region_name": "us-east-1"},
            }
        ),
    )

    assert run_dag(dagbag, "training_pipeline", "2025-03-01") == "success"
    assert run_dag(dagbag, "batch_scoring", "2025-03-02") == "success"
    assert run_dag(dagbag, "drift_monitoring", "2025-03-03") == "success"

    keys = [
        o["Key"]
        for page in admin.get_paginator("list_objects_v2").paginate(Bucket=bucket)
        for o in page.get("Contents", [])
    ]
    top = {k.split("/")[1] for k in keys}
    assert {"raw", "labels", "validation", "snapshots", "models", "predictions", "monitoring"} <= top
    assert all(k.startswith("prod/") for k in keys)
    assert not (tmp_path / "storage").exists()  # nothing went to the local default

    storage = open_storage(
        f"s3://{bucket}/prod", {"endpoint_url": s3_server, "access_key_id": "testing", "secret_access_key": "testing"}
    )
    version = registry.champion_version(storage, "credit_default")
    predictions = read_parquet_objects(storage, "predictions/credit_default/dt=2025-03-02")
    raw = read_parquet_objects(storage, "raw/credit_default/dt=2025-03-02")
    assert len(predictions) == len(raw) and set(predictions["ID"]) == set(raw["ID"])
    assert (predictions["model_version"] == version).all()
    assert list(predictions.columns) == [
        "ID",
        "score",
        "prediction",
        "model_version",
        "scored_at",
        "decided_by",
        "threshold",
        "input_publish_id",
    ]
    assert load_config(params).storage.root == f"s3://{bucket}/prod"
    decision = storage.read_json("monitoring/credit_default/decisions/dt=2025-03-03.json")
    assert decision["champion_version"] == version and decision["rows"] == len(predictions)
    assert decision["report"].startswith(f"s3://{bucket}/prod/monitoring/credit_default/reports/")
    assert storage.partition_exists("monitoring/credit_default/statistics/dt=2025-03-03")


def test_missing_connection_fails_closed_despite_ambient_credentials(dagbag, s3_server, tmp_path, monkeypatch):
    """Valid AWS_* credentials in the environment and no Airflow connection `aws_default`: the
    scoring task fails naming the connection and writes nothing; it never uses the ambient keys."""
    import boto3
    from conftest import write_params
    from helpers import task_states

    from pipeline.core.errors import StorageCredentialsMissing
    from pipeline_airflow import s3_options

    admin = boto3.client(
        "s3",
        endpoint_url=s3_server,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name="us-east-1",
    )
    admin.create_bucket(Bucket="ambient-creds")
    params = write_params(tmp_path)
    monkeypatch.setenv("PIPELINE_PARAMS", str(params))
    monkeypatch.setenv("PIPELINE_STORAGE_URI", "s3://ambient-creds/prod")
    for var, value in (
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_ENDPOINT_URL", s3_server),
        ("AWS_DEFAULT_REGION", "us-east-1"),
    ):
        monkeypatch.setenv(var, value)  # these would work: the point is that they are not used
    monkeypatch.delenv("AIRFLOW_CONN_AWS_DEFAULT", raising=False)

    with pytest.raises(
        StorageCredentialsMissing,
        match=r"s3://ambient-creds/prod needs the Airflow connection "
        r"'aws_default' \(storage.aws_conn_id\)",
    ):
        s3_options()
    dag = dagbag.get_dag("batch_scoring")
    for task in dag.tasks:
        task.retries = 0  # the failure itself is the point, not its retries
    import pendulum

    dag.deadline = None
    dag.test(logical_date=pendulum.datetime(2025, 3, 2, tz="UTC"))
    states = task_states(dagbag, "batch_scoring")
    assert states["ingest"] == "failed", states
    assert admin.list_objects_v2(Bucket="ambient-creds").get("KeyCount", 0) == 0, "something was written"
    assert not (tmp_path / "storage").exists()

    # `aws_conn_id: null` says so on purpose: then the standard chain applies.
    write_params(tmp_path, storage={"aws_conn_id": None})
    assert s3_options() is None
