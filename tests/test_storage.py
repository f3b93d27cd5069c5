"""The storage layer on a local directory and on a real S3 endpoint (moto server over HTTP)."""

import io

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.core.errors import PartitionNotFound, StorageError
from pipeline.core.storage import open_storage


@pytest.fixture(params=["local", "s3"])
def storage(request, tmp_path):
    if request.param == "local":
        return open_storage(str(tmp_path / "root"))
    env = request.getfixturevalue("s3_env")
    return open_storage(f"s3://{env['bucket']}/some/prefix")


def _table(n, offset=0):
    return pa.table({"id": list(range(offset, offset + n)), "v": [float(i) for i in range(n)]})


def test_json_and_bytes_roundtrip(storage):
    storage.write_json("a/b.json", {"x": 1})
    assert storage.read_json("a/b.json") == {"x": 1}
    assert storage.exists("a/b.json")
    assert storage.list_keys("a") == ["a/b.json"]
    with pytest.raises(FileNotFoundError):
        storage.read_bytes("a/missing.json")


def test_publish_replaces_partition_completely(storage):
    key = "raw/ds/dt=2025-01-01"
    storage.write_partition(key, {"part-0.parquet": _table(5), "part-1.parquet": _table(5, 5)})
    assert storage.read_partition(key).num_rows == 10
    storage.write_partition(key, {"part-0.parquet": _table(3, 100)})  # rerun with fewer files
    table = storage.read_partition(key)
    assert table.num_rows == 3 and table.column("id").to_pylist() == [100, 101, 102]
    data_files = [k for k in storage.list_keys(key) if k.endswith(".parquet")]
    assert len(data_files) == 1  # the previous version's files are gone
    assert storage.read_manifest(key)["row_count"] == 3


def test_failed_write_leaves_previous_partition_intact(storage):
    key = "predictions/m/dt=2025-01-02"
    storage.write_partition(key, {"part-0.parquet": _table(4)})
    before = storage.list_keys(key)
    with pytest.raises(RuntimeError, match="boom"), storage.staging() as staged:
        pq.write_table(_table(7), staged / "part-0.parquet")
        raise RuntimeError("boom")  # the writer dies before publishing
    assert storage.list_keys(key) == before
    assert storage.read_partition(key).num_rows == 4


def test_no_manifest_means_no_partition(storage):
    storage.write_bytes("raw/ds/dt=2025-01-03/part-0.parquet", b"half written")
    with pytest.raises(PartitionNotFound):
        storage.read_partition("raw/ds/dt=2025-01-03")
    assert not storage.partition_exists("raw/ds/dt=2025-01-03")


def test_empty_partition_is_refused(storage):
    with storage.staging() as staged, pytest.raises(StorageError, match="empty partition"):
        storage.publish_partition("raw/ds/dt=2025-01-04", staged)


def test_copy_and_delete_partition(storage):
    storage.write_partition("raw/ds/dt=2025-01-05", {"part-0.parquet": _table(2)})
    storage.copy_partition(
        "raw/ds/dt=2025-01-05", "quarantine/ds/dt=2025-01-05", extra_files={"why.json": b'{"bad": true}'}
    )
    storage.delete("raw/ds/dt=2025-01-05")
    assert not storage.partition_exists("raw/ds/dt=2025-01-05")
    assert storage.read_partition("quarantine/ds/dt=2025-01-05").num_rows == 2
    assert storage.read_partition_file("quarantine/ds/dt=2025-01-05", "why.json") == b'{"bad": true}'


def test_path_escape_is_refused(tmp_path):
    storage = open_storage(str(tmp_path))
    with pytest.raises(StorageError, match="may not contain"):
        storage.write_bytes("../outside.txt", b"x")


def test_s3_objects_really_are_on_the_endpoint(s3_env):
    storage = open_storage(f"s3://{s3_env['bucket']}/p")
    storage.write_partition("raw/ds/dt=2025-01-01", {"part-0.parquet": _table(3)})
    listed = s3_env["client"].list_objects_v2(Bucket=s3_env["bucket"])["Contents"]
    keys = sorted(o["Key"] for o in listed)
    assert keys[0] == "p/raw/ds/dt=2025-01-01/_manifest.json"
    body = s3_env["client"].get_object(Bucket=s3_env["bucket"], Key=keys[1])["Body"].read()
    assert pq.read_table(io.BytesIO(body)).num_rows == 3


def test_s3_source_is_read_with_the_storage_credentials(s3_server, tmp_path, monkeypatch):
    """A source on S3 reached with the endpoint/credentials given to storage (no AWS_* env)."""
    import datetime as dt

    import boto3
    from conftest import write_params

    from pipeline.core.settings import load_config
    from pipeline.data.ingest import ingest_day

    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(var, raising=False)
    admin = boto3.client(
        "s3", endpoint_url=s3_server, aws_access_key_id="k", aws_secret_access_key="s", region_name="us-east-1"
    )
    admin.create_bucket(Bucket="landing")
    rows = "".join(f"{i},{i * 1.5},{'ab'[i % 2]},{i % 2}\n" for i in range(60))
    admin.put_object(Bucket="landing", Key="in/source.csv", Body=("id,x,c,y\n" + rows).encode())
    params = write_params(
        tmp_path,
        {
            "dataset": {
                "name": "s3src",
                "source": {"uri": "s3://landing/in/source.csv", "format": "csv"},
                "id_column": "id",
                "target": {"column": "y", "positive_class": "1"},
                "batching": {"start_date": "2025-01-01", "days": 2, "label_delay_days": 1},
            },
            "training": {"window_days": 2, "holdout_days": 1},
        },
    )
    storage = open_storage(
        "s3://landing/out",
        {"endpoint_url": s3_server, "access_key_id": "k", "secret_access_key": "s", "region": "us-east-1"},
    )
    config = load_config(params)
    results = [ingest_day(config, storage, dt.date(2025, 1, d)) for d in (1, 2)]
    assert sum(r["rows"] for r in results) == 60


def test_hung_s3_endpoint_fails_within_the_configured_budget(tmp_path, monkeypatch):
    """A TCP endpoint that accepts connections and never answers: storage gives up within
    attempts x (connect + read timeout), not after minutes."""
    import socket
    import threading
    import time

    from conftest import ROOT, write_params

    from pipeline.core.settings import load_config
    from pipeline.steps import storage_for

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held = []
    stop = threading.Event()

    def accept_forever():
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])  # accept, never answer
            except OSError:
                continue

    threading.Thread(target=accept_forever, daemon=True).start()
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "k")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s")
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{server.getsockname()[1]}")
    config = load_config(
        write_params(tmp_path, storage={"connect_timeout_seconds": 1, "read_timeout_seconds": 2, "max_attempts": 2})
    )
    monkeypatch.setenv("PIPELINE_STORAGE_URI", "s3://hung-bucket/root")
    config = load_config(config.params_path)
    storage = storage_for(config)
    budget = config.storage.max_attempts * (
        config.storage.connect_timeout_seconds + config.storage.read_timeout_seconds
    )
    started = time.monotonic()
    try:
        with pytest.raises(Exception, match="(?i)timeout|timed out"):
            storage.read_json("anything.json")
        elapsed = time.monotonic() - started
    finally:
        stop.set()
        server.close()
        for conn in held:
            conn.close()
    assert 2 <= elapsed <= budget + 5, elapsed
    defaults = load_config(ROOT / "params.yaml").storage
    assert defaults.max_attempts * (defaults.connect_timeout_seconds + defaults.read_timeout_seconds) <= 60


def test_corrupt_json_artefact_names_the_file(tmp_path):
    from pipeline.core.errors import ArtefactError, ArtefactMissing, PipelineError

    storage = open_storage(str(tmp_path))
    storage.write_bytes("validation/x/dt=2025-01-01.json", b"{not json")
    with pytest.raises(ArtefactError, match=r"validation/x/dt=2025-01-01.json: not valid JSON"):
        storage.read_json("validation/x/dt=2025-01-01.json")
    with pytest.raises(ArtefactMissing, match="no object at") as info:
        storage.read_bytes("models/m/versions/v1/model.joblib")
    assert isinstance(info.value, PipelineError)  # the Airflow glue fails it without retries


def test_s3_publish_waits_for_a_live_lease_and_takes_over_an_expired_one(s3_env):
    import json as _json
    import time as _time

    import pyarrow as pa

    from pipeline.core.errors import PublishConflict
    from pipeline.core.storage import open_storage

    storage = open_storage(f"s3://{s3_env['bucket']}/root", wait_seconds=1.0, lease_seconds=60)
    key = "predictions/m/dt=2025-01-01"
    old = pa.table({"id": [1, 2, 3]})
    storage.write_partition(key, {"part-00000.parquet": old})
    lease = f"{key}/_publishing.json"
    storage.write_bytes(
        lease, _json.dumps({"owner": "x", "host": "another-host", "pid": 1, "expires_at": _time.time() + 60}).encode()
    )
    with pytest.raises(PublishConflict, match="being published by another-host"):
        storage.write_partition(key, {"part-00000.parquet": pa.table({"id": [9]})})
    assert storage.read_partition(key).equals(old)
    assert [k for k in storage.list_keys(key) if k.endswith(".parquet")] == [
        f"{key}/{f}" for f in storage.read_manifest(key)["files"]
    ], "the waiting writer uploaded nothing"

    storage.write_bytes(
        lease, _json.dumps({"owner": "x", "host": "another-host", "pid": 1, "expires_at": _time.time() - 1}).encode()
    )
    storage.write_bytes(f"{key}/part-00000-0123456789ab.parquet", b"debris of the dead writer")
    new = pa.table({"id": [7, 8]})
    storage.write_partition(key, {"part-00000.parquet": new})
    assert storage.read_partition(key).equals(new) and not storage.exists(lease)
    names = sorted(k.rsplit("/", 1)[1] for k in storage.list_keys(key))
    assert names == sorted(storage.read_manifest(key)["files"] + ["_manifest.json"]), "debris was not removed"
