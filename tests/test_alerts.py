"""On-call alerts reach real endpoints on loopback: an SMTP server (aiosmtpd) and an HTTP webhook.

A bad delivery fails `validate` in batch_scoring; on-call gets one email and one webhook with what
failed, why, where to look and what to do. Five failures with the same cause send one alert;
the next success sends one "resolved". Every alert is in the audit trail.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import threading
from email import message_from_bytes, policy
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import ROOT, _free_port, copy_trained
from helpers import demo_day_frames, run_dag, task_states

from pipeline import steps
from pipeline.core.settings import load_config

pytestmark = pytest.mark.e2e

BAD_DAY = "2025-03-03"


class Inbox:
    def __init__(self):
        self.messages = []

    async def handle_DATA(self, server, session, envelope):  # aiosmtpd handler hook
        self.messages.append(message_from_bytes(envelope.content, policy=policy.default))
        return "250 OK"


@pytest.fixture(scope="module")
def endpoints():
    from aiosmtpd.controller import Controller

    inbox = Inbox()
    smtp = Controller(inbox, hostname="127.0.0.1", port=_free_port())
    smtp.start()
    posts: list[dict] = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self):
            posts.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args):
            pass

    http = HTTPServer(("127.0.0.1", _free_port()), Hook)
    threading.Thread(target=http.serve_forever, daemon=True).start()
    yield {"inbox": inbox, "smtp_port": smtp.port, "posts": posts, "http_port": http.server_address[1]}
    smtp.stop()
    http.shutdown()


@pytest.fixture(scope="module")
def world(demo_champion, tmp_path_factory, endpoints):
    """The session's demo champion, with deliveries arriving as one file per day in a landing area."""
    tmp = tmp_path_factory.mktemp("alerts")
    raw, days = demo_day_frames()
    landing = tmp / "landing"
    for day in sorted(set(days)):
        if "2025-01-20" <= day <= BAD_DAY:
            (landing / f"dt={day}").mkdir(parents=True)
            raw[days == day].to_csv(landing / f"dt={day}" / "delivery.csv", index=False)
    dataset = yaml.safe_load((demo_champion / "params.yaml").read_text())["dataset"]
    params = copy_trained(
        demo_champion,
        tmp,
        dataset={**dataset, "source": {"uri": str(landing / "dt={date}" / "*.csv"), "format": "csv"}},
        alerts={"email_to": ["oncall@example.com"], "email_from": "pipeline@example.com", "dedupe_minutes": 60},
    )
    return {"tmp": tmp, "params": params, "landing": landing, "good": raw[days == BAD_DAY]}


@pytest.fixture
def channels(monkeypatch, endpoints, world):
    monkeypatch.setenv("PIPELINE_PARAMS", str(world["params"]))
    monkeypatch.setenv(
        "AIRFLOW_CONN_SMTP_ALERTS",
        json.dumps(
            {
                "conn_type": "smtp",
                "host": "127.0.0.1",
                "port": endpoints["smtp_port"],
                "extra": {"disable_ssl": True, "disable_tls": True, "timeout": 10, "retry_limit": 1},
            }
        ),
    )
    monkeypatch.setenv(
        "AIRFLOW_CONN_ALERTS_WEBHOOK",
        json.dumps(
            {
                "conn_type": "http",
                "host": "127.0.0.1",
                "port": endpoints["http_port"],
                "schema": "http",
                "extra": {"endpoint": "/hooks/oncall"},
            }
        ),
    )
    endpoints["inbox"].messages.clear()
    endpoints["posts"].clear()
    return endpoints


def _deliver(world, frame: pd.DataFrame) -> None:
    folder = world["landing"] / f"dt={BAD_DAY}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    frame.to_csv(folder / "delivery.csv", index=False)


def test_failed_validation_alerts_once_per_cause_then_resolves(world, channels, airflow_db):
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(str(ROOT / "dags"))
    bad = world["good"].copy()
    bad.loc[bad.index[:3], "AGE"] = "170"
    _deliver(world, bad)
    for _ in range(5):
        assert run_dag(bag, "batch_scoring", BAD_DAY) == "failed"
        assert task_states(bag, "batch_scoring")["validate"] == "failed"
    inbox, posts = channels["inbox"].messages, channels["posts"]
    assert len(inbox) == 1 and len(posts) == 1, (len(inbox), len(posts))  # five failures, one alert
    mail = inbox[0]
    assert mail["To"] == "oncall@example.com"
    assert "bad data: batch_scoring.validate 2025-03-03 failed" in mail["Subject"]
    body = mail.get_body(("html", "plain")).get_content()
    for expected in (
        "batch_scoring",
        "validate",
        "2025-03-03",
        "ValidationFailed",
        "expect_column_values_to_be_between(column=AGE): 3 of",
        "limit 0.00%",
        "quarantine/credit_default/dt=2025-03-03/",
        "failing validation page",
        ".html",
        "task log",
        "What to do:",
        "Bad data",
        "Then clear `validate` with its downstream tasks",
    ):
        assert expected in body, expected
    assert "<th align='left'>Try</th>" not in body  # bad data is never retried: no try counter
    alert = posts[0]["pipeline_alert"]
    assert posts[0]["text"].startswith("[pipeline] bad data")
    assert (alert["status"], alert["dag_id"], alert["task_id"], alert["partition_date"], alert["kind"]) == (
        "failed",
        "batch_scoring",
        "validate",
        BAD_DAY,
        "bad_data",
    )
    assert alert["run_id"] and alert["try_number"] >= 1
    assert alert["log_url"].startswith(
        load_config(world["params"]).alerts.ui_base_url.rstrip("/") + "/dags/batch_scoring/runs/"
    )
    # Links a mail client can open: the artefact app on the API server's public address.
    served = load_config(world["params"]).alerts.ui_base_url.rstrip("/") + "/pipeline/artefacts"
    assert alert["links"]["quarantine"].startswith(served + str(world["tmp"]))
    import os

    assert os.path.exists(alert["links"]["failing validation page"].removeprefix(served))

    _deliver(world, world["good"])  # the corrected delivery
    assert run_dag(bag, "batch_scoring", BAD_DAY) == "success"
    assert len(inbox) == 2 and len(posts) == 2
    assert "resolved: batch_scoring.validate 2025-03-03 succeeded" in inbox[1]["Subject"]
    assert posts[1]["pipeline_alert"]["status"] == "resolved" and posts[1]["pipeline_alert"]["failures"] == 5
    assert run_dag(bag, "batch_scoring", BAD_DAY) == "success"
    assert len(inbox) == 2  # nothing open: no second "resolved"

    audit = steps.audit_list(kind="alert", params=str(world["params"]))
    assert len(audit) == 1 and audit[0]["dag_id"] == "batch_scoring" and audit[0]["channels"] == ["email", "webhook"]
    assert len(steps.audit_list(kind="alert_resolved", params=str(world["params"]))) == 1
    assert len(steps.audit_list(kind="quarantine", params=str(world["params"]))) == 5


def test_late_zones_alert_once_as_freshness(world, channels, airflow_db):
    """The daily freshness check fails naming each late zone; on-call gets one freshness alert with
    the zones, why and where; the next day's identical lateness is counted, not sent again."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(str(ROOT / "dags"))
    assert run_dag(bag, "freshness", "2025-03-20") == "failed"
    inbox, posts = channels["inbox"].messages, channels["posts"]
    assert len(inbox) == 1 and len(posts) == 1, (len(inbox), len(posts))
    assert inbox[0]["Subject"].startswith("[pipeline] freshness: freshness.check_freshness")
    body = inbox[0].get_body(("html", "plain")).get_content()
    for expected in (
        "StaleData",
        "raw deliveries: ",
        "labels: ",
        "(limit 2)",
        "drift monitoring: nothing published yet (",
    ):
        assert expected in body, expected
    assert "python -m pipeline status" in body  # the runbook
    alert = posts[0]["pipeline_alert"]
    assert alert["kind"] == "freshness" and alert["dag_id"] == "freshness"
    assert run_dag(bag, "freshness", "2025-03-21") == "failed"
    assert len(inbox) == 1, "the same lateness must not alert twice within dedupe_minutes"


def test_monitoring_findings_page_on_call_once(world, channels, airflow_db):
    """A weekly run whose decision holds a data-quality break: the monitor task succeeds (its decision
    is written), the findings task fails and on-call gets one alert of kind monitoring naming the
    finding, the report and the runbook."""
    from airflow.dag_processing.dagbag import DagBag

    from pipeline.core.errors import ValidationFailed

    params = str(world["params"])
    steps.simulate(["2025-03-02"], "data_break", params=params)
    with pytest.raises(ValidationFailed):
        steps.validate("2025-03-02", params)
    bag = DagBag(str(ROOT / "dags"))
    assert run_dag(bag, "drift_monitoring", "2025-03-03") == "failed"
    states = task_states(bag, "drift_monitoring")
    assert states["monitor"] == "success" and states["findings"] == "failed"
    inbox, posts = channels["inbox"].messages, channels["posts"]
    assert len(inbox) == 1 and inbox[0]["Subject"].startswith("[pipeline] monitoring: drift_monitoring.findings")
    body = inbox[0].get_body(("html", "plain")).get_content()
    for expected in ("MonitoringFindings", "data-quality break", "quarantined", "reports/dt=2025-03-03.html"):
        assert expected in body, expected
    assert "Open the drift report" in body  # the runbook
    assert posts[0]["pipeline_alert"]["kind"] == "monitoring"


def _latest_ti(dag_id: str, task_id: str, state: str):
    from airflow.models import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        ti = (
            session.query(TaskInstance)
            .filter(TaskInstance.dag_id == dag_id, TaskInstance.task_id == task_id, TaskInstance.state == state)
            .order_by(TaskInstance.start_date.desc())
            .first()
        )
        return ti.key


def test_plugin_links_point_at_what_the_tasks_produced(world, channels, airflow_db):
    """After the alert test: the failed validate links its failing Data Docs page and the
    quarantined delivery; the successful tasks link the Data Docs page and the predictions."""
    import os

    from airflow.plugins_manager import get_global_operator_extra_links

    links = {link.name: link for link in get_global_operator_extra_links()}
    assert {
        "Data Docs (this validation)",
        "Quarantined delivery",
        "Prediction partition",
        "Evaluation report",
        "Drift report",
    } <= set(links)

    from fastapi.testclient import TestClient

    from pipeline_airflow.artefacts_app import app, require_user

    client = TestClient(app)
    # Without Airflow's token the app answers 401 (the real API server is in the standalone test).
    assert client.get("/artefacts/etc/passwd").status_code == 401
    app.dependency_overrides[require_user] = lambda: "on-call"

    def render(name, key):
        url = links[name].get_link(None, ti_key=key)
        assert url.startswith("/pipeline/artefacts/"), (name, url)  # same origin: the UI shows it
        assert os.path.exists(url[len("/pipeline/artefacts") :]), url
        assert client.get(url[len("/pipeline") :]).status_code == 200, url  # served by the plugin app
        return url

    assert client.get("/artefacts/etc/passwd").status_code == 404  # nothing outside the artefacts

    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(str(ROOT / "dags"))
    bad = world["good"].copy()
    bad.loc[bad.index[:2], "SEX"] = "7"
    _deliver(world, bad)
    assert run_dag(bag, "batch_scoring", BAD_DAY) == "failed"
    failed = _latest_ti("batch_scoring", "validate", "failed")
    assert render("Data Docs (this validation)", failed).endswith(".html")
    assert "/quarantine/credit_default/dt=2025-03-03/" in render("Quarantined delivery", failed)
    _deliver(world, world["good"])
    assert run_dag(bag, "batch_scoring", BAD_DAY) == "success"
    validated = _latest_ti("batch_scoring", "validate", "success")
    assert render("Data Docs (this validation)", validated).endswith(".html")
    assert links["Quarantined delivery"].get_link(None, ti_key=validated) == ""  # nothing behind it
    scored = _latest_ti("batch_scoring", "score", "success")
    predictions = render("Prediction partition", scored)
    assert "/predictions/credit_default/dt=2025-03-03" in predictions
    # Read-only zones: rows and model files are not served, malformed paths are 400.
    root = Path(load_config(world["params"]).storage.root)
    rows = [p for p in (root / "raw").rglob("*.parquet")] + list((root / "models").rglob("model.joblib"))
    assert rows and all(client.get(f"/artefacts{p}").status_code == 404 for p in rows)
    assert client.get("/artefacts" + predictions[len("/pipeline/artefacts") :] + "/_manifest.json").status_code == 200
    assert client.get("/artefacts/tmp/%00x").status_code == 400
    app.dependency_overrides.clear()


@pytest.mark.slow
def test_alert_arrives_from_a_run_of_the_real_scheduler(world, channels, tmp_path):
    """`airflow standalone` (scheduler, dag-processor, API server, triggerer; LocalExecutor on
    SQLite): a triggered batch_scoring run fails validation and the alert email arrives. Unpausing
    creates today's scheduled run, which skips (nothing delivered) instead of failing; with a deadline
    already passed (scoring_deadline_hours: 0) Airflow's Deadline Alert reports it late."""
    import os
    import subprocess
    import sys
    import time

    import airflow_env

    bad = world["good"].copy()
    bad.loc[bad.index[:4], "EDUCATION"] = "42"
    _deliver(world, bad)
    home = tmp_path / "airflow"
    port = _free_port()
    late = yaml.safe_load(open(world["params"]))
    late["alerts"]["scoring_deadline_hours"] = 0
    late_params = tmp_path / "params-deadline.yaml"
    late_params.write_text(yaml.safe_dump(late, sort_keys=False))
    env = {
        **os.environ,
        **airflow_env.airflow_env(home),
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
        "AIRFLOW__CORE__PARALLELISM": "2",
        # Free log-server ports, not 8793/8794: another Airflow may run beside (the stack test).
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(_free_port()),
        "AIRFLOW__LOGGING__TRIGGERER_LOG_SERVER_PORT": str(_free_port()),
        "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
        "PIPELINE_PARAMS": str(late_params),
        # standalone starts its components as `airflow ...` from PATH
        "PATH": f"{os.path.dirname(sys.executable)}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    airflow = [sys.executable, "-m", "airflow"]
    log = open(tmp_path / "standalone.log", "w")
    proc = subprocess.Popen(
        airflow + ["standalone"], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 240
        while True:  # wait until the dag-processor has parsed batch_scoring
            out = subprocess.run(airflow + ["dags", "list", "-o", "json"], env=env, capture_output=True, text=True)
            if '"batch_scoring"' in out.stdout:
                break
            assert time.monotonic() < deadline, (tmp_path / "standalone.log").read_text()[-3000:]
            time.sleep(3)
        subprocess.run(airflow + ["dags", "unpause", "batch_scoring"], env=env, check=True, capture_output=True)
        run_id = f"alert_check__{BAD_DAY}"
        subprocess.run(
            airflow + ["dags", "trigger", "batch_scoring", "--run-id", run_id, "--conf", json.dumps({"date": BAD_DAY})],
            env=env,
            check=True,
            capture_output=True,
        )
        import sqlite3

        def runs() -> dict[str, str]:
            with sqlite3.connect(home / "airflow.db") as db:
                return dict(db.execute("select run_id, state from dag_run where dag_id = 'batch_scoring'").fetchall())

        while runs().get(run_id) not in ("failed", "success"):
            assert time.monotonic() < deadline + 240, (tmp_path / "standalone.log").read_text()[-3000:]
            time.sleep(3)
        assert runs()[run_id] == "failed"
        # The failed validate task's log carries the pipeline's lines, not library noise.
        (log_file,) = (home / "logs").glob(f"dag_id=batch_scoring/run_id={run_id}/task_id=validate/attempt=1.log")
        task_log = log_file.read_text().splitlines()
        assert len(task_log) <= 30, "\n".join(task_log[:40])
        assert any('"level":"error"' in line.replace(" ", "") for line in task_log), "\n".join(task_log)
        assert any("expect_column_values_to_be_in_set(column=EDUCATION)" in line for line in task_log)
        others = {r: s for r, s in runs().items() if r != run_id}
        assert "failed" not in others.values(), others  # unpausing: today's run skips, never fails
        inbox = channels["inbox"].messages
        for _ in range(60):
            if len(inbox) >= 2:
                break
            time.sleep(1)
        failed = [m for m in inbox if "failed" in m["Subject"]]
        assert len(failed) == 1, [m["Subject"] for m in inbox]
        body = failed[0].get_body(("html", "plain")).get_content()
        assert "batch_scoring" in failed[0]["Subject"] and run_id in body
        assert "expect_column_values_to_be_in_set(column=EDUCATION)" in body
        assert any(p["pipeline_alert"]["run_id"] == run_id for p in channels["posts"])
        late_mails = [m for m in inbox if "is late" in m["Subject"]]
        assert len(late_mails) == 1, [m["Subject"] for m in inbox]
        late_body = late_mails[0].get_body(("html", "plain")).get_content()
        assert "scoring of the day not finished by its deadline" in late_body and "Lateness" in late_body
        token = _artefact_app_needs_airflow_auth(f"http://127.0.0.1:{port}", home, late_params)

        # Follow the alert's advice literally: the corrected delivery lands, then the failed task is
        # cleared with its downstream tasks as the alert says. The run succeeds, one "resolved"
        # message goes out, and no second failure alert.
        import html as html_mod

        advice = f'"dag_run_id": "{run_id}", "task_ids": ["validate"], "include_downstream": true'
        assert advice in html_mod.unescape(body)
        _deliver(world, world["good"])
        _api(
            f"http://127.0.0.1:{port}",
            token,
            "POST",
            "/api/v2/dags/batch_scoring/clearTaskInstances",
            {
                "dag_run_id": run_id,
                "task_ids": ["validate"],
                "include_downstream": True,
                "only_failed": False,
                "dry_run": False,
            },
        )
        cleared_at = time.monotonic()
        while runs().get(run_id) != "success":
            assert time.monotonic() < cleared_at + 300, (runs(), (tmp_path / "standalone.log").read_text()[-3000:])
            time.sleep(3)
        for _ in range(60):
            if any("resolved" in m["Subject"] for m in inbox):
                break
            time.sleep(1)
        subjects = [m["Subject"] for m in inbox]
        assert sum(f"resolved: batch_scoring.validate {BAD_DAY} succeeded" in s for s in subjects) == 1, subjects
        assert sum("failed" in s for s in subjects) == 1, subjects  # no second failure alert
    finally:
        import signal

        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()
        _deliver(world, world["good"])


def test_pipeline_metrics_reach_statsd(world, tmp_path, airflow_db):
    """A scoring run with Airflow's StatsD metrics on: a UDP listener on loopback receives the
    pipeline's counters (rows ingested, scored, throughput) next to Airflow's own."""
    import os
    import socket
    import subprocess
    import sys

    listener = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    listener.bind(("127.0.0.1", 0))
    listener.settimeout(0.5)
    env = {
        **os.environ,
        "PIPELINE_PARAMS": str(world["params"]),
        "AIRFLOW__METRICS__STATSD_ON": "True",
        "AIRFLOW__METRICS__STATSD_HOST": "127.0.0.1",
        "AIRFLOW__METRICS__STATSD_PORT": str(listener.getsockname()[1]),
        "AIRFLOW__METRICS__STATSD_PREFIX": "airflow",
    }
    script = (
        "import sys; sys.path.insert(0, 'tests'); sys.path.insert(0, 'plugins')\n"
        "from airflow.dag_processing.dagbag import DagBag\n"
        "from helpers import run_dag\n"
        f"print(run_dag(DagBag('dags'), 'batch_scoring', '{BAD_DAY}'))\n"
    )
    _deliver(world, world["good"])
    log = open(tmp_path / "run.log", "w+")
    proc = subprocess.Popen(
        [sys.executable, "-c", script], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, text=True
    )
    received = []
    while proc.poll() is None:
        with contextlib.suppress(TimeoutError):
            received.append(listener.recv(65536).decode())
    out = (tmp_path / "run.log").read_text()
    log.close()
    for _ in range(5):
        try:
            received.append(listener.recv(65536).decode())
        except TimeoutError:
            break
    assert proc.returncode == 0 and out.strip().splitlines()[-1] == "success", out[-2000:]
    lines = "\n".join(received).splitlines()
    names = {line.split(":")[0] for line in lines}
    assert {
        "airflow.pipeline.rows_ingested",
        "airflow.pipeline.rows_scored",
        "airflow.pipeline.scoring_rows_per_second",
        "airflow.pipeline.validations_passed",
    } <= names, names
    scored = [line for line in lines if line.startswith("airflow.pipeline.rows_scored:")]
    assert scored[0].split(":")[1].split("|")[0] == str(len(world["good"]))


def _artefact_app_needs_airflow_auth(base: str, home, params) -> None:
    """The plugin's artefact app on the real API server: 401 without Airflow's token, the allowed
    zones with it (bearer or the UI's session cookie), 404 for rows, models and traversal, 400 for
    a malformed path."""
    import urllib.error
    import urllib.request

    def get(path: str, token: str | None = None, cookie: bool = False) -> int:
        headers = {}
        if token and cookie:
            headers["Cookie"] = f"_token={token}"
        elif token:
            headers["Authorization"] = f"Bearer {token}"
        try:
            with urllib.request.urlopen(urllib.request.Request(base + path, headers=headers), timeout=30) as resp:
                return resp.status
        except urllib.error.HTTPError as exc:
            return exc.code

    config = load_config(params)
    root = Path(config.storage.root)
    docs = Path(config.validation.gx_root) / "uncommitted" / "data_docs" / "local_site" / "index.html"
    verdict = next(root.glob("quarantine/*/dt=*/*/verdict.json"))
    raw_file = next(root.glob("raw/*/dt=*/*.parquet"))
    model_file = next(root.glob("models/*/versions/*/model.joblib"))
    url = lambda p: "/pipeline/artefacts" + str(Path(p).resolve())  # noqa: E731
    assert get(url(docs)) == 401 and get(url(verdict)) == 401 and get(url(raw_file)) == 401
    assert get(url(docs), token="not-a-jwt") in (401, 403)
    passwords = json.loads((Path(home) / "simple_auth_manager_passwords.json.generated").read_text())
    user, password = next(iter(passwords.items()))
    body = json.dumps({"username": user, "password": password}).encode()
    with urllib.request.urlopen(
        urllib.request.Request(
            base + "/auth/token", data=body, method="POST", headers={"Content-Type": "application/json"}
        ),
        timeout=30,
    ) as r:
        token = json.loads(r.read())["access_token"]
    assert get(url(docs), token) == 200 and get(url(docs), token, cookie=True) == 200
    assert get(url(verdict), token) == 200 and get(url(verdict.parent), token) == 200
    assert get(url(raw_file), token) == 404 and get(url(model_file), token) == 404
    assert get("/pipeline/artefacts/etc/passwd", token) == 404
    assert get(url(root) + "/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd", token) == 404
    assert get(url(root) + "/x%00y", token) == 400
    return token


def _api(base: str, token: str, method: str, path: str, body: dict) -> dict:
    import urllib.request

    req = urllib.request.Request(
        base + path,
        data=json.dumps(body).encode(),
        method=method,
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
    )
    with urllib.request.urlopen(req, timeout=60) as resp:
        return json.loads(resp.read() or b"{}")
