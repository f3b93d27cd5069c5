"""The scale-out stack as local processes: Airflow's API server, scheduler, DAG processor,
triggerer and N Celery workers on PostgreSQL (metadata) and Redis (broker), with storage
and the DVC remote on an S3 endpoint. The same settings as docker-compose.yaml
(deploy/stack.yaml), for machines without a Docker engine.

    python scripts/stack.py up      # make stack: start it, print where everything is
    python scripts/stack.py down    # make stack-down: stop it, drop its database
    python scripts/stack.py status

tests/test_stack.py starts its own instance with :func:`start` (own database, own broker DB,
own queue) and stops it with :func:`stop`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import airflow_env  # noqa: E402

SETTINGS = yaml.safe_load((ROOT / "deploy" / "stack.yaml").read_text())
PG_HOST, PG_PORT, PG_USER = "127.0.0.1", 5432, "postgres"
REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
STATE = ROOT / ".stack" / "state.json"
# Credentials reach the pipeline only through the Airflow connection: none of these in the env.
AWS_VARS = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_ENDPOINT_URL",
    "AWS_PROFILE",
    "AWS_DEFAULT_REGION",
)


def storage_uri() -> str:
    return f"s3://{SETTINGS['bucket']}/{SETTINGS['storage_prefix']}"


def dvc_remote_uri() -> str:
    return f"s3://{SETTINGS['bucket']}/{SETTINGS['dvc_prefix']}"


def postgres_url(db: str, driver: str = "postgresql+psycopg2") -> str:
    return f"{driver}://{PG_USER}@{PG_HOST}:{PG_PORT}/{db}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def unreachable() -> str | None:
    """Why the stack cannot run here (PostgreSQL or Redis not reachable), or None."""
    problems = []
    try:
        import psycopg2

        psycopg2.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, dbname="postgres", connect_timeout=3).close()
    except Exception as exc:  # noqa: BLE001 - any failure means: no usable PostgreSQL
        problems.append(f"PostgreSQL at {PG_HOST}:{PG_PORT} (user {PG_USER}, trust auth): {str(exc).strip()}")
    try:
        import redis

        redis.Redis(host=REDIS_HOST, port=REDIS_PORT, socket_connect_timeout=3).ping()
    except Exception as exc:  # noqa: BLE001
        problems.append(f"Redis at {REDIS_HOST}:{REDIS_PORT}: {exc}")
    return "; ".join(problems) or None


def _pg(sql: str) -> None:
    import psycopg2

    conn = psycopg2.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, dbname="postgres")
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
    finally:
        conn.close()


def create_database(db: str) -> None:
    _pg(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
    _pg(f'CREATE DATABASE "{db}"')


def drop_database(db: str) -> None:
    _pg(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')


OWNER_KEY = "pipeline-stack:owner"


def claim_broker_db(redis_db: int, owner: str) -> None:
    """Make Redis DB `redis_db` this stack's: refuse a DB that holds keys of anything else (another
    stack's queues, unacked messages, someone's data), then mark it with OWNER_KEY."""
    import redis

    client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=redis_db)
    size = client.dbsize()
    if size:
        marker = client.get(OWNER_KEY)
        sample = [k.decode(errors="replace") for k in client.scan_iter(count=20)][:5]
        raise RuntimeError(
            f"Redis DB {redis_db} at {REDIS_HOST}:{REDIS_PORT} holds {size} key(s) (e.g. {sample})"
            + (f" of another stack ({marker.decode(errors='replace')})" if marker else "")
            + "; the stack needs a broker DB of its own: stop that stack (`make stack-down`), pick another "
            "index (redis_db in deploy/stack.yaml), or empty it (`redis-cli -n "
            + f"{redis_db} flushdb`) if nothing else uses it"
        )
    if not client.set(OWNER_KEY, owner, nx=True):  # another start claimed it a moment ago
        raise RuntimeError(f"Redis DB {redis_db} was just claimed by {client.get(OWNER_KEY)!r}; pick another index")


def release_broker_db(redis_db: int, owner: str) -> int:
    """Empty the stack's broker DB (queues, unacked messages, kombu bindings); returns the keys removed.
    A DB whose marker names another owner is left alone."""
    import redis

    client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=redis_db)
    marker = client.get(OWNER_KEY)
    if marker is not None and marker.decode(errors="replace") != owner:
        return 0
    size = client.dbsize()
    client.flushdb()
    return size


def free_redis_db() -> int:
    """An empty Redis database index (1..15), so parallel stacks never share a broker."""
    import redis

    for index in range(1, 16):
        if redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=index).dbsize() == 0:
            return index
    raise RuntimeError("no empty Redis database (1..15) for the broker")


@dataclass
class Stack:
    home: str
    params: str
    s3_endpoint: str
    db: str
    redis_db: int
    queue: str
    api_port: int
    password: str
    workers: int
    concurrency: int
    use_schedule: bool = True
    pids: dict = field(default_factory=dict)

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def logs(self) -> Path:
        return Path(self.home) / "process-logs"

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in AWS_VARS and not k.startswith("AIRFLOW")}
        env.update(airflow_env.airflow_env(self.home))
        bin_dir = str(Path(sys.executable).parent)
        env.update(
            {
                "PATH": f"{bin_dir}{os.pathsep}{env.get('PATH', '')}",
                "PIPELINE_PARAMS": self.params,
                "PIPELINE_STORAGE_URI": storage_uri(),
                "PIPELINE_DVC_REMOTE_URL": dvc_remote_uri(),
                "AIRFLOW__CORE__EXECUTOR": SETTINGS["executor"],
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": postgres_url(self.db),
                "AIRFLOW__CELERY__BROKER_URL": f"redis://{REDIS_HOST}:{REDIS_PORT}/{self.redis_db}",
                "AIRFLOW__CELERY__RESULT_BACKEND": postgres_url(self.db, "db+postgresql+psycopg2"),
                "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(self.concurrency),
                # A task still running after this is redelivered by Redis: longer than any task here.
                "AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__VISIBILITY_TIMEOUT": str(
                    SETTINGS["visibility_timeout_seconds"]
                ),
                # A lost worker's tasks are failed and retried elsewhere after this (deploy/stack.yaml).
                "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": str(SETTINGS["task_heartbeat_timeout_seconds"]),
                "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": str(
                    SETTINGS["heartbeat_check_interval_seconds"]
                ),
                # A task a dead worker had taken but not started is re-queued after this.
                "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT": str(SETTINGS["task_queued_timeout_seconds"]),
                "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT_CHECK_INTERVAL": str(
                    SETTINGS["task_queued_timeout_check_interval_seconds"]
                ),
                "AIRFLOW__OPERATORS__DEFAULT_QUEUE": self.queue,
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.api}/execution/",
                "AIRFLOW__CORE__AUTH_MANAGER": "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{SETTINGS['admin_user']}:admin",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(Path(self.home) / "passwords.json"),
                "AIRFLOW__API_AUTH__JWT_SECRET": (Path(self.home) / "jwt_secret").read_text().strip(),
                "AIRFLOW__API__PORT": str(self.api_port),
                "AIRFLOW__API__BASE_URL": self.api,
                "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
                "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": str(self.use_schedule),
                "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
                "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "30",
                # DAG files change only on deploy: re-parse every 5 minutes, not every 30 s (CPU for tasks).
                "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "300",
                "AIRFLOW__CORE__PARALLELISM": str(self.workers * self.concurrency),
                "AIRFLOW__LOGGING__TRIGGERER_LOG_SERVER_PORT": str(free_port()),
                "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
            }
        )
        env.update(extra)
        return env

    def airflow(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        done = subprocess.run(
            [str(Path(sys.executable).parent / "airflow"), *args], env=self.env(), capture_output=True, text=True
        )
        if check and done.returncode:
            raise RuntimeError(
                f"`airflow {' '.join(args[:2])}` failed ({done.returncode}):\n"
                f"{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
            )
        return done

    def spawn(self, name: str, *args: str, **extra_env: str) -> None:
        self.logs.mkdir(parents=True, exist_ok=True)
        log = open(self.logs / f"{name}.log", "ab")
        env = self.env(**extra_env)
        if not name.startswith("worker"):
            # Under a test's coverage, only the workers (where the pipeline's tasks run) are measured:
            # tracing the scheduler and API server loops doubled their CPU for lines other tests measure.
            env = {k: v for k, v in env.items() if not k.startswith("COVERAGE_PROCESS")}
        proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "airflow"), *args],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=str(ROOT),
            start_new_session=True,
        )
        self.pids[name] = proc.pid

    def restart(self, name: str, *args: str) -> None:
        """Stop component `name` (TERM, then KILL after 20 s) and start it again with this stack's
        current settings (e.g. after `use_schedule` changed)."""
        pid = self.pids[name]
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.5)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)
        self.spawn(name, *args)

    def start_worker(self, i: int) -> None:
        """Celery worker `i` (again, after it was lost: a replaced machine joins the same queue)."""
        self.spawn(
            f"worker{i}",
            "celery",
            "worker",
            "--celery-hostname",
            f"worker{i}@%h",
            "--queues",
            self.queue,
            "--concurrency",
            str(self.concurrency),
            "--without-mingle",
            "--without-gossip",
            AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT=str(free_port()),
        )

    # ---- REST API

    def token(self) -> str:
        body = json.dumps({"username": SETTINGS["admin_user"], "password": self.password}).encode()
        req = urllib.request.Request(
            f"{self.api}/auth/token", data=body, method="POST", headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.loads(resp.read())["access_token"]

    def call(self, method: str, path: str, body: dict | None = None, token: str | None = None) -> dict:
        req = urllib.request.Request(
            f"{self.api}/api/v2{path}",
            method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {token or self.token()}"},
        )
        with urllib.request.urlopen(req, timeout=60) as resp:
            return json.loads(resp.read() or b"{}")


def start(
    home: Path,
    params: Path,
    s3_endpoint: str,
    db: str,
    redis_db: int,
    queue: str | None = None,
    api_port: int | None = None,
    workers: int | None = None,
    concurrency: int | None = None,
    use_schedule: bool = True,
    s3_credentials: tuple[str, str] = ("minioadmin", "minioadmin"),
    timeout: float = 300,
) -> Stack:
    """Create the database, migrate it, add the S3 connection, start every component and wait
    until the API answers and every worker has registered with the broker."""
    home.mkdir(parents=True, exist_ok=True)
    password = secrets.token_urlsafe(12)
    (home / "passwords.json").write_text(json.dumps({SETTINGS["admin_user"]: password}))
    (home / "jwt_secret").write_text(secrets.token_urlsafe(32))
    stack = Stack(
        home=str(home),
        params=str(params),
        s3_endpoint=s3_endpoint,
        db=db,
        redis_db=redis_db,
        queue=queue or f"pipeline-{secrets.token_hex(4)}",
        api_port=api_port or free_port(),
        password=password,
        workers=workers or SETTINGS["workers"],
        concurrency=concurrency or SETTINGS["worker_concurrency"],
        use_schedule=use_schedule,
    )
    claim_broker_db(redis_db, owner=f"{stack.home} db={db}")
    create_database(db)
    try:
        stack.airflow("db", "migrate")
        login, secret = s3_credentials
        stack.airflow(
            "connections",
            "add",
            SETTINGS["aws_conn_id"],
            "--conn-json",
            json.dumps(
                {
                    "conn_type": "aws",
                    "login": login,
                    "password": secret,
                    "extra": {"endpoint_url": s3_endpoint, "region_name": SETTINGS["region"]},
                }
            ),
        )
        stack.spawn("api-server", "api-server", "--port", str(stack.api_port))
        stack.spawn("scheduler", "scheduler")
        stack.spawn("dag-processor", "dag-processor")
        stack.spawn("triggerer", "triggerer")
        for i in range(1, stack.workers + 1):
            stack.start_worker(i)
        wait_ready(stack, timeout)
    except BaseException:
        stop(stack)  # a failed start leaves no processes and no database behind
        raise
    return stack


def wait_ready(stack: Stack, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    pending = {"api-server", *(f"worker{i}" for i in range(1, stack.workers + 1))}
    while pending:
        for name, pid in stack.pids.items():
            if not _alive(pid):
                tail = (stack.logs / f"{name}.log").read_text(errors="replace")[-3000:]
                raise RuntimeError(f"{name} exited during start-up; its log ends:\n{tail}")
        if "api-server" in pending:
            try:
                with urllib.request.urlopen(f"{stack.api}/api/v2/monitor/health", timeout=5):
                    pending.discard("api-server")
            except (urllib.error.URLError, OSError):
                pass
        for name in [n for n in pending if n.startswith("worker")]:
            if "ready." in (stack.logs / f"{name}.log").read_text(errors="replace"):
                pending.discard(name)
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"stack not ready after {timeout:.0f}s: waiting for {sorted(pending)} (logs in {stack.logs})"
            )
        time.sleep(1)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (exited, not yet reaped) is not alive
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def stop(stack: Stack, drop: bool = True) -> None:
    """Stop every component (TERM, then KILL after 20 s), drop the database, empty the broker DB."""
    for pid in stack.pids.values():
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + 20
    while any(_alive(p) for p in stack.pids.values()) and time.monotonic() < deadline:
        time.sleep(0.5)
    for pid in stack.pids.values():
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
    for pid in stack.pids.values():  # reap our children (no zombies left behind)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
    if drop:
        drop_database(stack.db)
        # Everything the stack created in its broker DB: queues, `unacked` messages of lost workers
        # (redelivered to the next stack's workers otherwise), `unacked_index`, kombu bindings.
        release_broker_db(stack.redis_db, owner=f"{stack.home} db={stack.db}")


# --------------------------------------------------------------------------- make stack


def _start_s3(port: int, state_dir: Path) -> tuple[str, int]:
    endpoint = f"http://127.0.0.1:{port}"
    log = open(state_dir / "s3.log", "ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    for _ in range(60):
        try:
            urllib.request.urlopen(endpoint, timeout=2)
            break
        except urllib.error.HTTPError:
            break
        except (urllib.error.URLError, OSError):
            time.sleep(0.5)
    import boto3

    boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id="minioadmin",
        aws_secret_access_key="minioadmin",
        region_name=SETTINGS["region"],
    ).create_bucket(Bucket=SETTINGS["bucket"])
    return endpoint, proc.pid


def up(args: argparse.Namespace) -> int:
    if STATE.exists():
        print(f"a stack is already up (state in {STATE}); `make stack-down` first", file=sys.stderr)
        return 1
    problem = unreachable()
    if problem:
        print(f"cannot start the stack: {problem}", file=sys.stderr)
        return 1
    state_dir = STATE.parent
    state_dir.mkdir(parents=True, exist_ok=True)
    s3_pid = None
    endpoint = args.s3_endpoint
    if not endpoint:
        endpoint, s3_pid = _start_s3(args.s3_port, state_dir)
    print(
        f"starting Airflow ({SETTINGS['executor']}, {SETTINGS['workers']} workers) on PostgreSQL db "
        f"{SETTINGS['postgres_db']} and Redis db {SETTINGS['redis_db']}; S3 at {endpoint} ...",
        flush=True,
    )
    stack = start(
        state_dir / "airflow",
        Path(os.environ.get("PIPELINE_PARAMS", ROOT / "params.yaml")),
        endpoint,
        SETTINGS["postgres_db"],
        SETTINGS["redis_db"],
        queue="default",
        api_port=SETTINGS["api_port"],
    )
    if s3_pid:
        stack.pids["s3"] = s3_pid
    STATE.write_text(json.dumps(asdict(stack), indent=2))
    print(f"""
Airflow UI / REST API  {stack.api}   user {SETTINGS["admin_user"]}  password {stack.password}
S3 endpoint            {endpoint}   bucket {SETTINGS["bucket"]} (storage {storage_uri()}, DVC {dvc_remote_uri()})
                       credentials only in the Airflow connection '{SETTINGS["aws_conn_id"]}'
metadata DB            {postgres_url(stack.db)}
broker                 redis://{REDIS_HOST}:{REDIS_PORT}/{stack.redis_db}
components             {", ".join(n for n in stack.pids if n != "s3")}
logs                   {stack.logs}/*.log, task logs in {stack.home}/logs
DAGs are paused: unpause and trigger them in the UI, e.g. training_pipeline, then batch_scoring.
Stop with: make stack-down""")
    return 0


def down(_args: argparse.Namespace) -> int:
    if not STATE.exists():
        print("no stack is up")
        return 0
    data = json.loads(STATE.read_text())
    stack = Stack(**data)
    stop(stack, drop=True)
    STATE.unlink()
    print(f"stopped {', '.join(stack.pids)}; dropped database {stack.db}")
    return 0


def status(_args: argparse.Namespace) -> int:
    if not STATE.exists():
        print("no stack is up")
        return 0
    data = json.loads(STATE.read_text())
    for name, pid in data["pids"].items():
        print(f"{name:14s} pid {pid:<8d} {'running' if _alive(pid) else 'DOWN'}")
    print(f"UI http://127.0.0.1:{data['api_port']}  user {SETTINGS['admin_user']}  password {data['password']}")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("up")
    s.add_argument("--s3-endpoint", help="use this S3 endpoint (e.g. MinIO) instead of starting moto's server")
    s.add_argument("--s3-port", type=int, default=9000)
    sub.add_parser("down")
    sub.add_parser("status")
    args = p.parse_args(argv)
    return {"up": up, "down": down, "status": status}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
