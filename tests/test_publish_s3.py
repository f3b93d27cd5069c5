"""S3 publishing that glob readers can trust: real `score` subprocesses are SIGKILLed mid-publish
and run two at a time against moto's S3 server; after one completed run, a DuckDB glob over
predictions/**/*.parquet returns exactly the manifest's rows, every round."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest
from conftest import ROOT, write_params

pytestmark = pytest.mark.e2e

DAY = "2025-03-02"
ROUNDS = 20
PREFIX = "publish"


def _glob_count(endpoint: str, bucket: str) -> int:
    """What an analyst's DuckDB sees: every Parquet object under predictions/, no manifest."""
    import duckdb
    import s3fs

    fs = s3fs.S3FileSystem(
        key="testing", secret="testing", endpoint_url=endpoint, use_listings_cache=False, skip_instance_cache=True
    )
    con = duckdb.connect()
    con.register_filesystem(fs)
    try:
        return con.execute(
            f"select count(*) from read_parquet('s3://{bucket}/{PREFIX}/predictions/**/*.parquet')"
        ).fetchall()[0][0]
    finally:
        con.close()


@pytest.fixture(scope="module")
def scored_day(s3_server, tmp_path_factory):
    """A champion and one validated, scored day on S3; the day is published in ~10 parts."""
    import boto3

    from pipeline import steps

    tmp = tmp_path_factory.mktemp("publish")
    bucket = "publish-test"
    boto3.client(
        "s3",
        endpoint_url=s3_server,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name="us-east-1",
    ).create_bucket(Bucket=bucket)
    params = write_params(
        tmp,
        training={"window_days": 8, "holdout_days": 2, "cv_folds": 3, "estimator_params": {"max_iter": 30}},
        storage={"row_group_rows": 40, "publish_lease_seconds": 60},
        scoring={"rows_per_task": 40},
    )
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": s3_server,
        "PIPELINE_STORAGE_URI": f"s3://{bucket}/{PREFIX}",
        "PIPELINE_PARAMS": str(params),
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        steps.run_training("2025-03-01", str(params))
        steps.run_scoring(DAY, str(params))
        config, storage = steps.open_pipeline(str(params))
        yield {"params": params, "env": env, "bucket": bucket, "storage": storage, "endpoint": s3_server}
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


# Each run is a real process running the real CLI, killed with a real SIGKILL. To keep 60 runs
# affordable on 2 cores, they are forked from a "zygote" that imported the pipeline once
# (importing sklearn and friends costs seconds per process here), as pre-fork servers do.
ZYGOTE = r"""
import os, sys
import pipeline.cli, pipeline.steps, pipeline.model.score, sklearn.ensemble  # the slow imports, once
for line in sys.stdin:
    cmd, _, arg = line.strip().partition(" ")
    if cmd == "spawn":
        log, args = arg.split(" ", 1)
        pid = os.fork()
        if pid == 0:
            fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
            os.dup2(fd, 1); os.dup2(fd, 2)
            code = 1
            try:
                code = pipeline.cli.main(args.split())
            finally:
                sys.stdout.flush(); sys.stderr.flush()
                os._exit(code)
        print(pid, flush=True)
    elif cmd == "wait":
        _, status = os.waitpid(int(arg), 0)
        print(os.waitstatus_to_exitcode(status), flush=True)
"""


class Zygote:
    def __init__(self, env: dict):
        self.proc = subprocess.Popen(
            [sys.executable, "-c", ZYGOTE], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1
        )

    def spawn(self, params, log) -> int:
        self.proc.stdin.write(f"spawn {log} --params {params} score --date {DAY}\n")
        self.proc.stdin.flush()
        return int(self.proc.stdout.readline())

    def wait(self, pid: int) -> int:
        self.proc.stdin.write(f"wait {pid}\n")
        self.proc.stdin.flush()
        return int(self.proc.stdout.readline())

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


@pytest.fixture
def zygote(scored_day):
    z = Zygote(scored_day["env"])
    yield z
    z.close()


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


def _state(ctx, glob: bool = True) -> dict:
    storage = ctx["storage"]
    key = f"predictions/credit_default/dt={DAY}"
    manifest = storage.read_manifest(key)
    objects = [k for k in storage.list_keys(key) if k.endswith(".parquet")]
    return {
        "manifest_rows": manifest["row_count"],
        "listed": len(manifest["files"]),
        "objects": len(objects),
        "lease": storage.exists(f"{key}/_publishing.json"),
        "glob": _glob_count(ctx["endpoint"], ctx["bucket"]) if glob else None,
        "staged": len(storage.list_keys("_staging")),
    }


@pytest.mark.slow
def test_kills_mid_publish_never_leave_orphans_after_the_next_run(scored_day, zygote, tmp_path):
    from pipeline import steps

    storage = scored_day["storage"]
    lease_key = storage.backend._key(f"predictions/credit_default/dt={DAY}/_publishing.json")
    client = storage.backend.client
    rng = random.Random(7)
    rounds = []
    for i in range(ROUNDS):
        pid = zygote.spawn(scored_day["params"], tmp_path / f"kill-{i}.log")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and _alive(pid):  # the publish has begun
            try:
                client.head_object(Bucket=storage.backend.bucket, Key=lease_key)
                break
            except client.exceptions.ClientError:
                time.sleep(0.005)
        time.sleep(rng.uniform(0, 0.15))
        os.kill(pid, signal.SIGKILL)
        zygote.wait(pid)
        after_kill = _state(scored_day, glob=False)  # objects vs manifest tell what a glob would see
        steps.score(DAY, str(scored_day["params"]))  # one completed run
        after_run = _state(scored_day)
        rounds.append({"round": i, "after_kill": after_kill, "after_run": after_run})
        assert after_run["glob"] == after_run["manifest_rows"], rounds[-1]
        assert after_run["objects"] == after_run["listed"] and not after_run["lease"], rounds[-1]
    debris = [r for r in rounds if r["after_kill"]["lease"] or r["after_kill"]["objects"] > r["after_kill"]["listed"]]
    doubled = [r for r in rounds if r["after_kill"]["objects"] != r["after_kill"]["listed"]]
    _record(
        "kill_rounds",
        {
            "rounds": ROUNDS,
            "killed_mid_publish": len(debris),
            "extra_objects_for_globs_right_after_kill": len(doubled),
            "glob_equal_manifest_after_next_run": ROUNDS,
        },
    )
    # The kills really landed inside publishes (a lease or extra objects were left behind).
    assert len(debris) >= ROUNDS // 4, f"only {len(debris)} of {ROUNDS} kills hit a publish"
    # What the kills left in _staging/ is garbage collection's job: collected once old enough.
    gc = steps.collect_garbage(older_than_hours=0, params=str(scored_day["params"]))
    assert not storage.list_keys("_staging") and _state(scored_day)["glob"] == _state(scored_day)["manifest_rows"]
    assert gc["removed"] >= 0


@pytest.mark.slow
def test_two_concurrent_runs_resolve_to_one_winner(scored_day, zygote, tmp_path):
    rounds = []
    for i in range(ROUNDS):
        pids = [zygote.spawn(scored_day["params"], tmp_path / f"pair-{i}-{j}.log") for j in range(2)]
        codes = [zygote.wait(pid) for pid in pids]
        state = _state(scored_day)
        rounds.append({"round": i, "exit_codes": codes, **state})
        assert codes == [0, 0], (rounds[-1], (tmp_path / f"pair-{i}-0.log").read_text()[-2000:])
        assert state["glob"] == state["manifest_rows"], rounds[-1]
        # The loser's objects are gone: only the manifest's files, no lease, no staged parts.
        assert state["objects"] == state["listed"] and not state["lease"] and state["staged"] == 0, rounds[-1]
    waited = sum("waiting" in (tmp_path / f"pair-{r['round']}-{j}.log").read_text() for r in rounds for j in (0, 1))
    _record(
        "concurrent_rounds",
        {
            "rounds": ROUNDS,
            "both_exit_0": ROUNDS,
            "glob_equal_manifest": ROUNDS,
            "runs_that_waited_for_the_lease": waited,
        },
    )


def _record(name: str, value: dict) -> None:
    out = ROOT / "tests" / "results" / "publish_s3_summary.json"
    out.parent.mkdir(exist_ok=True)
    data = json.loads(out.read_text()) if out.exists() else {}
    data[name] = value
    out.write_text(json.dumps(data, indent=2))


def test_mapped_scoring_equals_single_task_scoring(scored_day, tmp_path):
    """The ranges scored independently (in any order, as mapped tasks are) and published as one
    partition equal one task scoring the whole day, row for row."""
    import yaml

    from pipeline import steps

    storage = scored_day["storage"]
    key = f"predictions/credit_default/dt={DAY}"
    jobs = steps.scoring_jobs(DAY, str(scored_day["params"]))
    assert len(jobs) >= 5 and sum(j["range"]["rows"] for j in jobs) == jobs[0]["plan"]["rows"]
    parts = [
        steps.score_range(j["plan"], j["range"], str(scored_day["params"]))
        for j in random.Random(3).sample(jobs, len(jobs))
    ]
    mapped_result = steps.publish_scoring(jobs[0]["plan"], parts, str(scored_day["params"]))
    mapped = storage.read_partition(key).to_pandas()
    assert mapped_result["ranges"] == len(jobs) and storage.read_manifest(key)["ranges"] == len(jobs)

    whole = yaml.safe_load(scored_day["params"].read_text())
    whole["scoring"]["rows_per_task"] = 10**9
    single_params = tmp_path / "single.yaml"
    single_params.write_text(yaml.safe_dump(whole))
    single_result = steps.score(DAY, str(single_params))
    single = storage.read_partition(key).to_pandas()
    assert single_result["ranges"] == 1

    columns = [c for c in single.columns if c != "scored_at"]  # the time of each run differs by design
    a = mapped.sort_values("ID").reset_index(drop=True)[columns]
    b = single.sort_values("ID").reset_index(drop=True)[columns]
    assert len(a) == len(b) == jobs[0]["plan"]["rows"]
    assert a.equals(b)
