"""The scale-out deployment for real: API server, scheduler, DAG processor, triggerer and two
Celery workers on the local PostgreSQL (a database of this run's own, dropped afterwards) and
Redis (an empty broker DB, flushed afterwards), with storage and the DVC remote on an S3
endpoint (moto's server on 127.0.0.1). Credentials exist only in the Airflow connection.
Runs are triggered and watched through the REST API, as an operator's tooling would. Deliveries
arrive as one file per day in a landing directory; the last one lands while the stack runs and
is scored because it landed (the triggerer's watcher, the scheduler's asset-triggered run).

Skips when PostgreSQL or Redis cannot be reached, unless PIPELINE_TEST_STACK=required
(set by .ci/run), which turns that into a failure.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
import uuid

import pytest
import stack as stack_mod
import yaml
from conftest import ROOT, write_params
from helpers import demo_day_frames, land_delivery

pytestmark = [pytest.mark.stack, pytest.mark.slow]

TRAIN_AS_OF = "2025-03-01"
SCORE_DAYS = ("2025-03-02", "2025-03-03", "2025-03-04")
ARRIVING_DAY = "2025-03-05"


@pytest.fixture
def services():
    problem = stack_mod.unreachable()
    if problem:
        if os.environ.get("PIPELINE_TEST_STACK") == "required":
            pytest.fail(f"PIPELINE_TEST_STACK=required but the stack's services are not reachable: {problem}")
        pytest.skip(f"stack services not reachable ({problem}); set PIPELINE_TEST_STACK=required to fail instead")


def _wait_runs(stack, token, runs: dict[str, str], timeout: float) -> dict[str, str]:
    """runs: run_id -> dag_id. Returns run_id -> final state."""
    deadline = time.monotonic() + timeout
    states: dict[str, str] = {}
    while len(states) < len(runs):
        for run_id, dag_id in runs.items():
            if run_id in states:
                continue
            state = stack.call("GET", f"/dags/{dag_id}/dagRuns/{run_id}", token=token)["state"]
            if state in ("success", "failed"):
                states[run_id] = state
        if time.monotonic() > deadline:
            break
        time.sleep(3)
    return states


def _task_report(stack, token, dag_id: str, run_id: str) -> str:
    tis = stack.call("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances", token=token)["task_instances"]
    return ", ".join(f"{t['task_id']}[{t['map_index']}]={t['state']}" for t in tis)


def _logs_tail(stack) -> str:
    out = []
    for path in sorted(stack.logs.glob("*.log")):
        text = path.read_text(errors="replace")
        out.append(f"--- {path.name}\n{text[-1500:]}")
    return "\n".join(out)


def _descendants(root: int) -> list[int]:
    """Every process below `root` (by parent pid), from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        for child in children.get(pid, []):
            out.append(child)
            todo.append(child)
    return out


def _ti(stack, token, ti: dict) -> dict:
    return stack.call(
        "GET",
        f"/dags/{ti['dag_id']}/dagRuns/{ti['run_id']}/taskInstances/{ti['task_id']}"
        + (f"/{ti['map_index']}" if ti["map_index"] >= 0 else ""),
        token=token,
    )


def _kill_worker_during_a_task(stack, token, runs: dict[str, str], worker: str, timeout: float) -> dict:
    """SIGKILL `worker` (its main process and everything below it) as soon as one of `runs`' task
    instances is running in one of its processes; returns that task instance and the kill time."""
    import signal

    main = stack.pids[worker]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        below = set(_descendants(main))
        for run_id, dag_id in runs.items():
            tis = stack.call("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances", token=token)["task_instances"]
            for t in tis:
                if t["state"] == "running" and t.get("pid") in below:
                    victims = [main, *_descendants(main)]
                    for pid in victims:
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(pid, signal.SIGKILL)
                    return {
                        "dag_id": dag_id,
                        "run_id": run_id,
                        "task_id": t["task_id"],
                        "map_index": t["map_index"],
                        "killed_at": time.monotonic(),
                        "processes_killed": len(victims),
                    }
        time.sleep(1)
    raise AssertionError(f"no task of {list(runs)} ran on {worker} within {timeout:.0f}s\n{_logs_tail(stack)}")


def _wait_not_running(stack, token, ti: dict, timeout: float) -> dict:
    """How long after the kill the scheduler stopped seeing the lost task instance as running."""
    deadline = ti["killed_at"] + timeout
    while time.monotonic() < deadline:
        state = _ti(stack, token, ti)["state"]
        if state != "running":
            return {"seconds": time.monotonic() - ti["killed_at"], "state": state}
        time.sleep(1)
    raise AssertionError(f"{ti} still running {timeout:.0f}s after its worker was killed\n{_logs_tail(stack)}")


def test_training_and_scoring_on_celery_postgres_redis_and_s3(services, s3_server, tmp_path):
    import boto3

    started = time.monotonic()
    bucket = stack_mod.SETTINGS["bucket"]
    admin = boto3.client(
        "s3",
        endpoint_url=s3_server,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name="us-east-1",
    )
    with contextlib.suppress(admin.exceptions.BucketAlreadyOwnedByYou):
        admin.create_bucket(Bucket=bucket)
    prefix = stack_mod.SETTINGS["storage_prefix"]
    for page in admin.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"{prefix}/"):
        for obj in page.get("Contents", []):  # a previous test in this session's S3 server
            admin.delete_object(Bucket=bucket, Key=obj["Key"])
    # The landing area: the labelled days training reads and the days scored by hand; ARRIVING_DAY lands later.
    raw, days = demo_day_frames()
    landing = tmp_path / "landing"
    for day in sorted(set(days)):
        if "2025-01-15" <= day <= "2025-02-15" or day in SCORE_DAYS:
            land_delivery(landing, day, raw[days == day])
    dataset = yaml.safe_load((ROOT / "params.yaml").read_text())["dataset"]
    params = write_params(
        tmp_path,
        dataset={**dataset, "source": {"uri": str(landing / "dt={date}" / "*.csv"), "format": "csv"}},
        training={"window_days": 10, "holdout_days": 3, "cv_folds": 3, "estimator_params": {"max_iter": 40}},
        # Small row groups and ranges, so each ~330-row day is scored by two mapped tasks.
        storage={"row_group_rows": 200},
        scoring={"rows_per_task": 200, "arrival_poll_seconds": 2, "arrival_settle_seconds": 1},
        dvc={"enabled": True, "repo_dir": str(tmp_path / "no-checkout"), "push": True},
    )
    db = f"pipeline_test_{uuid.uuid4().hex[:10]}"
    stack = stack_mod.start(
        tmp_path / "airflow",
        params,
        s3_server,
        db=db,
        redis_db=stack_mod.free_redis_db(),
        use_schedule=False,
        s3_credentials=("testing", "testing"),
    )
    try:
        ready = time.monotonic() - started
        token = stack.token()
        deadline = time.monotonic() + 180
        for dag_id in ("training_pipeline", "batch_scoring"):
            while True:  # the DAG processor has parsed it
                try:
                    stack.call("GET", f"/dags/{dag_id}", token=token)
                    break
                except Exception as exc:  # noqa: BLE001 - 404 until parsed
                    if time.monotonic() > deadline:
                        raise AssertionError(f"{dag_id} never appeared in the API\n{_logs_tail(stack)}") from exc
                    time.sleep(2)
            stack.call("PATCH", f"/dags/{dag_id}", {"is_paused": False}, token=token)

        t0 = time.monotonic()
        train = {"dag_run_id": "stack-training", "logical_date": f"{TRAIN_AS_OF}T00:00:00Z", "conf": {}}
        stack.call("POST", "/dags/training_pipeline/dagRuns", train, token=token)
        states = _wait_runs(stack, token, {"stack-training": "training_pipeline"}, timeout=900)
        assert states.get("stack-training") == "success", (
            f"training: {states} {_task_report(stack, token, 'training_pipeline', 'stack-training')}\n"
            f"{_logs_tail(stack)}"
        )
        training_seconds = time.monotonic() - t0

        t0 = time.monotonic()
        runs = {}
        for day in SCORE_DAYS:
            run_id = f"stack-scoring-{day}"
            stack.call(
                "POST",
                "/dags/batch_scoring/dagRuns",
                {"dag_run_id": run_id, "logical_date": f"{day}T00:00:00Z", "conf": {}},
                token=token,
            )
            runs[run_id] = "batch_scoring"
        # Lose worker1 while one of these runs' tasks runs on it (SIGKILL of its main, pool and task
        # processes: a lost machine), then watch the scheduler notice and worker2 take over.
        lost = _kill_worker_during_a_task(stack, token, runs, "worker1", timeout=300)
        detected = _wait_not_running(stack, token, lost, timeout=240)
        stack.start_worker(1)  # the lost machine is replaced; worker2 alone has carried on meanwhile
        states = _wait_runs(stack, token, runs, timeout=600)
        assert all(states.get(r) == "success" for r in runs), (
            f"scoring: {states} "
            + " | ".join(_task_report(stack, token, "batch_scoring", r) for r in runs)
            + f"\n{_logs_tail(stack)}"
        )
        scoring_seconds = time.monotonic() - t0
        mapped = [
            t
            for t in stack.call(
                "GET", f"/dags/batch_scoring/dagRuns/stack-scoring-{SCORE_DAYS[0]}/taskInstances", token=token
            )["task_instances"]
            if t["task_id"] == "score_range"
        ]
        assert len(mapped) >= 2 and all(t["state"] == "success" for t in mapped)
        retried = _ti(stack, token, lost)
        assert retried["state"] == "success" and retried["try_number"] >= 2, retried
        assert detected["seconds"] <= 90, detected
        lost_delay = time.monotonic() - lost["killed_at"]

        # Scoring by data arrival: a delivery lands -> the triggerer's watcher claims it and fires an
        # asset event -> the scheduler starts scoring_on_arrival -> it starts batch_scoring for the day.
        t0 = time.monotonic()
        stack.call("PATCH", "/dags/training_pipeline", {"is_paused": True}, token=token)
        stack.use_schedule = True  # the scheduler creates asset-triggered runs only with its schedule on
        stack.restart("scheduler", "scheduler")
        stack.call("PATCH", "/dags/scoring_on_arrival", {"is_paused": False}, token=token)
        # The watcher of an asset is registered when its (now unpaused) consumer is parsed again.
        file_token = stack.call("GET", "/dags/scoring_on_arrival/details", token=token)["file_token"]
        stack.call("PUT", f"/parseDagFile/{file_token}", token=token)
        land_delivery(landing, ARRIVING_DAY, raw[days == ARRIVING_DAY])
        landed = time.monotonic()
        arrival_run = f"arrival__{ARRIVING_DAY}"
        deadline = time.monotonic() + 300
        while True:
            try:
                stack.call("GET", f"/dags/batch_scoring/dagRuns/{arrival_run}", token=token)
                break
            except Exception as exc:  # noqa: BLE001 - 404 until scoring_on_arrival has started it
                if time.monotonic() > deadline:
                    raise AssertionError(
                        f"no batch_scoring run {arrival_run} after the delivery landed\n"
                        f"{stack.call('GET', '/dags/scoring_on_arrival/dagRuns', token=token)}\n{_logs_tail(stack)}"
                    ) from exc
                time.sleep(2)
        states = _wait_runs(stack, token, {arrival_run: "batch_scoring"}, timeout=300)
        assert states.get(arrival_run) == "success", (
            f"{states} {_task_report(stack, token, 'batch_scoring', arrival_run)}\n{_logs_tail(stack)}"
        )
        arrival_seconds, landed_to_scored = time.monotonic() - t0, time.monotonic() - landed
        dispatch = stack.call("GET", "/dags/scoring_on_arrival/dagRuns", token=token)["dag_runs"]
        assert [r["run_type"] for r in dispatch] == ["asset_triggered"] and dispatch[0]["state"] == "success", dispatch
        arrival_runs = [
            r["dag_run_id"]
            for r in stack.call("GET", "/dags/batch_scoring/dagRuns", token=token)["dag_runs"]
            if r["dag_run_id"].startswith("arrival__")
        ]
        assert arrival_runs == [arrival_run], arrival_runs  # the days scored before did not start again

        # Every artefact is in the bucket; nothing went to the local storage root.
        from helpers import read_parquet_objects

        from pipeline.core.storage import open_storage
        from pipeline.model import registry

        storage = open_storage(
            f"s3://{bucket}/{prefix}",
            {"endpoint_url": s3_server, "access_key_id": "testing", "secret_access_key": "testing"},
        )
        keys = storage.list_keys("")
        assert {"raw", "labels", "validation", "snapshots", "models", "predictions", "contracts"} <= {
            k.split("/")[0] for k in keys
        }
        assert not (tmp_path / "storage").exists(), "something was written to the local storage root"
        assert not (tmp_path / "no-checkout").exists(), "training touched a DVC checkout"
        version = registry.champion_version(storage, "credit_default")
        manifest = registry.read_manifest(storage, "credit_default", version)
        dvc = manifest["data"]["dvc"]
        assert dvc["pushed"] and dvc["remote"] == stack_mod.dvc_remote_uri()
        md5 = dvc["md5"]
        dvc_prefix = stack_mod.SETTINGS["dvc_prefix"]
        assert admin.list_objects_v2(Bucket=bucket, Prefix=f"{dvc_prefix}/files/md5/{md5[:2]}/{md5[2:]}")["KeyCount"]
        claim = storage.read_json(f"arrivals/credit_default/dt={ARRIVING_DAY}.json")
        assert claim["files"] == [str(landing / f"dt={ARRIVING_DAY}" / "delivery.csv")]
        for day in (*SCORE_DAYS, ARRIVING_DAY):
            part = f"predictions/credit_default/dt={day}"
            predictions = read_parquet_objects(storage, part)
            raw = storage.read_partition(f"raw/credit_default/dt={day}").to_pandas()
            assert len(predictions) == len(raw) == storage.read_manifest(part)["row_count"]
            assert set(predictions["ID"]) == set(raw["ID"]) and (predictions["model_version"] == version).all()
            assert not predictions["ID"].duplicated().any(), f"{day}: a row was scored twice"
            assert storage.read_manifest(part)["ranges"] >= 2, day
        assert not [k for k in keys if k.startswith("_staging/")], "staged parts were left behind"

        # Tasks ran on both Celery workers.
        per_worker = {}
        for i in range(1, stack.workers + 1):
            text = (stack.logs / f"worker{i}.log").read_text(errors="replace")
            per_worker[f"worker{i}"] = len(re.findall(r"Executing workload in Celery", text))
        import redis

        broker = redis.Redis(host=stack_mod.REDIS_HOST, port=stack_mod.REDIS_PORT, db=stack.redis_db)
        summary = {
            "broker_keys_before_stop": sorted(k.decode(errors="replace") for k in broker.scan_iter(count=100)),
            "stack_ready_seconds": round(ready, 1),
            "training_seconds": round(training_seconds, 1),
            "scoring_3_days_seconds": round(scoring_seconds, 1),
            "arrival_phase_seconds": round(arrival_seconds, 1),
            "landed_to_scored_seconds": round(landed_to_scored, 1),
            "total_seconds": round(time.monotonic() - started, 1),
            "tasks_per_worker": per_worker,
            "database": db,
            "broker_db": stack.redis_db,
            "queue": stack.queue,
            "mapped_ranges_first_day": len(mapped),
            "worker_lost": {
                "task": f"{lost['run_id']}/{lost['task_id']}[{lost['map_index']}]",
                "detected_after_seconds": round(detected["seconds"], 1),
                "state_after_detection": detected["state"],
                "retry_try_number": retried["try_number"],
                "kill_to_all_runs_done_seconds": round(lost_delay, 1),
            },
        }
        print(f"stack test: {json.dumps(summary)}")
        (ROOT / "tests" / "results").mkdir(exist_ok=True)
        (ROOT / "tests" / "results" / "stack_summary.json").write_text(json.dumps(summary, indent=2))
        assert all(n > 0 for n in per_worker.values()), f"tasks did not run on every worker: {per_worker}"
    finally:
        stack_mod.stop(stack)
    import redis

    broker = redis.Redis(host=stack_mod.REDIS_HOST, port=stack_mod.REDIS_PORT, db=stack.redis_db)
    assert broker.dbsize() == 0, f"keys left in the broker DB: {[k for k in broker.scan_iter(count=50)][:10]}"
    import psycopg2

    conn = psycopg2.connect(host="127.0.0.1", user="postgres", dbname="postgres")
    with conn.cursor() as cur:
        cur.execute("select count(*) from pg_database where datname = %s", (db,))
        assert cur.fetchone()[0] == 0, f"database {db} was not dropped"
    conn.close()
