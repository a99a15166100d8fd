"""The retraining loop end to end, on loopback with the real parts (issue #19):

    PostgreSQL `scores` (the champion 20 % worse than HAR-RV over 7 days)
      -> rps serve --database-url (rps_score_* and the rps_accuracy_* threshold gauges on /metrics)
      -> Debian's prometheus (scrapes it every second, evaluates monitoring/rules/rps-accuracy.yml
         with `for:` rewritten to 0s in a temp copy)
      -> Debian's prometheus-alertmanager (routes action="retrain" to the webhook, repeating fast)
      -> rps alert-hook
      -> Airflow 3's API server (`airflow api-server`, sqlite, simple auth manager, the repo's DAGs)

It asserts that a run of the training DAG appears with the alert in its conf, and that
Alertmanager's repeat notifications of the same alert reach the hook and create no second run.
Then the retraining the run asks for happens — the DAG's stages (extract → quality → transform →
train → evaluate, as its tasks run them in local mode) on the unchanged data, in a copy of the
session pipeline's project that rps serve serves — and the test asserts the rest of the loop:
the new version is no better, so evaluate's champion/challenger gate does not promote it; rps serve
refreshes and keeps the champion; the alert keeps firing (same activeAt, never resolved) and no
second run is created.
Every wait has a deadline. Skipped, with the reason, only when a package or binary is missing:
prometheus, prometheus-alertmanager (make setup-tools), PostgreSQL, Airflow (the test venv).
"""
import datetime as dt
import json
import os
import pathlib
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from rps_testing import ROOT, STAGES, bin_dir, run_stage, stage_env  # noqa: E402

PG_SCRIPT = ROOT / "tests/servers/postgres.sh"
RULES = ROOT / "monitoring/rules/rps-accuracy.yml"
DAG_ID = "crypto_volatility_pipeline"
MODEL = "btc-volatility"
SYMBOL = "BTC-USDT"
USER, PASSWORD = "rps-hook", "loopback-only-password"
SERVE_TOKEN = "loopback-refresh-token"
# The whole test, and its slowest step (Airflow's database and DAG serialization on a busy 2-core box).
DEADLINE_S = 420
AIRFLOW_READY_S = 180


def tool(*names, hint):
    for n in names:
        path = shutil.which(n)
        if path:
            return path
    pytest.skip(f"{' / '.join(names)} not found: {hint}")


def airflow_cli():
    venv = pathlib.Path(os.environ.get("RPS_VENV", pathlib.Path.home() / ".cache/rps-venv"))
    for cand in (pathlib.Path(sys.executable).parent / "airflow", venv / "bin/airflow"):
        if cand.exists():
            return str(cand)
    return tool("airflow", hint="Airflow is not installed: pip install -r tests/python/requirements-airflow.txt")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(method, url, body=None, token=None, timeout=5):
    """(status, parsed JSON or text); never raises on an HTTP status."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            status, raw = r.status, r.read()
    except urllib.error.HTTPError as e:
        status, raw = e.code, e.read()
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode(errors="replace")


class Procs:
    """Processes this test started, each in its own session with a log file; stopped by pid."""

    def __init__(self, logs):
        self.logs, self.procs = logs, {}
        self.one_shot = {"airflow-db-migrate", "airflow-dags-reserialize"}

    def start(self, name, argv, env=None, cwd=None):
        log = open(self.logs / f"{name}.log", "w")
        self.procs[name] = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=cwd, start_new_session=True
        )
        log.close()
        return self.procs[name]

    def check_alive(self):
        """Every server still runs (one-shot steps may end, with 0)."""
        for name, p in list(self.procs.items()):
            code = p.poll()
            if code is None or (code == 0 and name in self.one_shot):
                continue
            pytest.fail(f"{name} exited ({code}):\n{self.tail(name)}")

    def tail(self, name, lines=40):
        path = self.logs / f"{name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def report(self):
        return "\n".join(f"---- {n}\n{self.tail(n)}" for n in list(self.procs))

    def stop(self):
        for p in list(self.procs.values()):
            if p.poll() is None:
                try:
                    os.killpg(p.pid, 15)
                except ProcessLookupError:
                    pass
        for p in list(self.procs.values()):
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, 9)
                p.wait(timeout=5)


def wait_for(what, check, deadline, procs, interval=0.5):
    """Poll `check` (a value or None) until it gives a value or the deadline passes."""
    last = None
    while time.monotonic() < deadline:
        procs.check_alive()
        try:
            value = check()
            last = "answered, but not with the value yet" if not value else None
        except (OSError, urllib.error.URLError) as e:  # not listening yet
            value, last = None, e
        if value:
            return value
        time.sleep(interval)
    pytest.fail(f"timed out waiting for {what} (last error: {last})\n{procs.report()}")


def psql(url, *args):
    out = subprocess.run(["psql", url, "-v", "ON_ERROR_STOP=1", "-qAt", *args], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


@pytest.fixture(scope="module")
def postgres():
    """An admin URL: the shared server of `make test` (RPS_TEST_DATABASE_URL), else a throwaway one."""
    shared = os.environ.get("RPS_TEST_DATABASE_URL")
    if shared:
        yield shared
        return
    tool("psql", hint="PostgreSQL is not installed (make setup-tools)")
    state = tempfile.mkdtemp(prefix="rps-alerting-pg-")
    try:
        out = subprocess.run(["bash", str(PG_SCRIPT), "start", sys.executable, state], capture_output=True, text=True, timeout=180)
        if out.returncode != 0 and "not found" in out.stderr:
            pytest.skip(out.stderr.strip())
        assert out.returncode == 0, out.stderr
        yield out.stdout.strip().rsplit("RPS_TEST_DATABASE_URL=", 1)[1]
    finally:
        subprocess.run(["bash", str(PG_SCRIPT), "stop", state], capture_output=True, timeout=120)
        shutil.rmtree(state, ignore_errors=True)


def airflow_env(home):
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AIRFLOW_", "AIRFLOW__", "RPS_AIRFLOW_", "MLFLOW_", "AWS_")) and k not in ("RPS_TEST_AIRFLOW_HOME",)
    }
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__DAGS_FOLDER=str(ROOT / "dags"),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__AUTH_MANAGER="airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
        AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS=f"{USER}:admin",
        AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE=str(home / "passwords.json"),
        # Created paused and no scheduler runs: the triggered run is created, never executed.
        AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION="True",
        AIRFLOW__API_AUTH__JWT_SECRET="loopback-test-secret-not-a-real-one",
        KUBECONFIG=str(home / "no-kubeconfig"),
        PYTHONDONTWRITEBYTECODE="1",
    )
    return env


def prepare_airflow(cli, home, port, procs, result):
    """`airflow db migrate`, then the API server and `airflow dags reserialize` side by side (the
    DAG must be in the database before the API can create runs of it; the server need not wait
    for it). Runs in a thread while the other servers start."""
    env = airflow_env(home)

    def step(*args):
        # A process of the test like the servers: stopped with them if the test ends first.
        p = procs.start("airflow-" + "-".join(args), [cli, *args], env=env, cwd=home)
        try:
            p.wait(timeout=AIRFLOW_READY_S)
        except subprocess.TimeoutExpired:
            result["error"] = f"airflow {' '.join(args)} took more than {AIRFLOW_READY_S} s"
            return False
        if p.returncode != 0:
            result["error"] = f"airflow {' '.join(args)} failed ({p.returncode}):\n{procs.tail('airflow-' + '-'.join(args), 60)}"
        return p.returncode == 0

    if not step("db", "migrate"):
        return
    procs.start("airflow-api-server", [cli, "api-server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"], env=env, cwd=home)
    if step("dags", "reserialize"):
        result["ok"] = True


def insert_scores(url, newest_bar, version):
    """7 days of hourly scores for the champion and HAR-RV on the same bars: the champion's QLIKE
    is 1.2 times HAR-RV's on every bar, and its 80 % interval covers 4 bars out of 5."""
    rows = []
    for i in range(7 * 24):
        bar = newest_bar - dt.timedelta(hours=i)
        frm = bar - dt.timedelta(hours=1)
        realized = 0.004 + 0.001 * (i % 5)
        rows.append(f"('{MODEL}','{version}','champion','{SYMBOL}','{bar.isoformat()}','{frm.isoformat()}',{realized},{realized * 1.3},0.12,0.05,{'false' if i % 5 == 0 else 'true'})")
        rows.append(f"('har_rv_log','{version}',NULL,'{SYMBOL}','{bar.isoformat()}','{frm.isoformat()}',{realized},{realized * 1.2},0.10,0.04,NULL)")
    psql(
        url,
        "-c",
        "INSERT INTO scores (model, version, alias, symbol, bar_time, predicted_from, realized, forecast, qlike, log_error, covered_80) VALUES "
        + ",".join(rows),
    )
    return len(rows)


def override(text, key, value):
    """params.yaml with one nested knob (`  key: ...`, unique in the file) set to `value`."""
    new, n = re.subn(rf"(?m)^(\s+{key}:\s*)[^\s#]+", rf"\g<1>{value}", text)
    assert n == 1, f"params.yaml has {n} `{key}:` keys"
    return new


def fast_rules(dst):
    """The rule file with every `for:` at 0s, so the alert fires on the first evaluation."""
    text = re.sub(r"(?m)^(\s+for:\s*)\S+", r"\g<1>0s", RULES.read_text())
    assert "for: 1h" not in text
    dst.write_text(text)
    return dst


def metric(text, name, **labels):
    """The value of one sample of a Prometheus text exposition, or None."""
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return None


def test_a_degraded_champion_triggers_one_run_and_a_no_better_retrain_keeps_it_firing(postgres, pipeline, tmp_path):
    prometheus = tool("prometheus", hint="apt-get install --no-install-recommends prometheus (make setup-tools)")
    alertmanager = tool(
        "prometheus-alertmanager", "alertmanager", hint="apt-get install --no-install-recommends prometheus-alertmanager (make setup-tools)"
    )
    cli = airflow_cli()
    rps = bin_dir() / "rps"
    assert rps.exists(), f"{rps} is missing: build the workspace's binaries"
    deadline = time.monotonic() + DEADLINE_S
    procs = Procs(tmp_path)
    started = time.monotonic()
    wall_start = dt.datetime.now(dt.timezone.utc)

    # Airflow's database and the serialized DAG, in the background.
    af_home = tmp_path / "airflow"
    af_home.mkdir()
    (af_home / "passwords.json").write_text(json.dumps({USER: PASSWORD}))
    prepared = {}
    af_port = free_port()
    airflow = f"http://127.0.0.1:{af_port}"
    prep = threading.Thread(target=prepare_airflow, args=(cli, af_home, af_port, procs, prepared), daemon=True)
    prep.start()
    db = f"rps_alerting_{os.getpid()}"
    try:
        # The scores the stream consumer would have written.
        psql(postgres, "-c", f"DROP DATABASE IF EXISTS {db}")
        psql(postgres, "-c", f"CREATE DATABASE {db}")
        url = postgres.rsplit("/", 1)[0] + "/" + db
        # rps serve re-reads the scores every second; the hook's cooldown is off, so only the run
        # id keeps a repeat notification from creating a second run.
        params = tmp_path / "params.yaml"
        params.write_text(override(override((ROOT / "params.yaml").read_text(), "refresh_seconds", 1), "cooldown_minutes", 0))
        base_env = {k: v for k, v in os.environ.items() if not k.startswith(("RPS_", "MLFLOW_", "AWS_", "DATABASE_URL"))}
        base_env["NO_COLOR"] = "1"
        migrate = subprocess.run(
            [str(rps), "stream", "--params", str(params), "migrate"], env={**base_env, "DATABASE_URL": url}, capture_output=True, text=True, timeout=60
        )
        assert migrate.returncode == 0, migrate.stderr
        newest = dt.datetime.now(dt.timezone.utc).replace(minute=0, second=0, microsecond=0) - dt.timedelta(hours=1)
        # rps serve labels and compares the versions its registry holds live: the champion the
        # session's pipeline registered (its scores seeded as that version's), in a copy of its
        # project, which the retraining below changes. A retrained version must beat the champion
        # by 1 % (evaluate.promotion_margin) to be promoted.
        project = tmp_path / "project"
        shutil.copytree(pipeline, project, symlinks=True)
        (project / "params.yaml").write_text(override((project / "params.yaml").read_text(), "promotion_margin", 0.01))
        registry = project / ".rps/registry"
        champion = json.loads((registry / MODEL / "aliases.json").read_text())["champion"]
        assert insert_scores(url, newest, champion) == 2 * 7 * 24

        serve_port = free_port()
        procs.start(
            "rps-serve",
            [str(rps), "serve", "--bind", f"127.0.0.1:{serve_port}", "--registry", str(registry),
             "--database-url", url, "--params", str(params)],
            env={**base_env, "RPS_SERVE_TOKEN": SERVE_TOKEN},
        )
        scrape = f"http://127.0.0.1:{serve_port}/metrics"

        def ratio():
            status, text = http("GET", scrape)
            if status != 200:
                return None
            return metric(text, "rps_score_qlike_ratio_vs_har", symbol=SYMBOL, alias="champion", window="7d")

        r = wait_for("rps serve to export the champion's ratio to HAR-RV", ratio, deadline, procs)
        assert r == pytest.approx(1.2, rel=1e-6)
        _, text = http("GET", scrape)
        assert metric(text, "rps_accuracy_qlike_margin") == pytest.approx(0.05)

        # The hook.
        hook_port = free_port()
        procs.start(
            "rps-alert-hook",
            [str(rps), "alert-hook", "--params", str(params), "--bind", f"127.0.0.1:{hook_port}", "--airflow-url", airflow],
            env={**base_env, "RPS_AIRFLOW_USERNAME": USER, "RPS_AIRFLOW_PASSWORD": PASSWORD},
        )
        hook = f"http://127.0.0.1:{hook_port}"
        wait_for("rps alert-hook", lambda: http("GET", f"{hook}/health")[0] == 200, deadline, procs)

        # Alertmanager: retrain alerts to the hook, fast grouping and repeats.
        am_port = free_port()
        (tmp_path / "alertmanager.yml").write_text(json.dumps({
            "route": {
                "receiver": "null",
                "group_by": ["alertname", "symbol"],
                "group_wait": "1s",
                "group_interval": "1s",
                "repeat_interval": "2s",
                "routes": [{"matchers": ['action="retrain"'], "receiver": "retrain"}],
            },
            "receivers": [
                {"name": "null"},
                {"name": "retrain", "webhook_configs": [{"url": f"{hook}/alerts", "send_resolved": True, "max_alerts": 0}]},
            ],
        }))
        (tmp_path / "am-data").mkdir()
        procs.start("alertmanager", [alertmanager, f"--config.file={tmp_path / 'alertmanager.yml'}", f"--storage.path={tmp_path / 'am-data'}",
                                     f"--web.listen-address=127.0.0.1:{am_port}", "--cluster.listen-address="])

        # Prometheus: scrape rps serve every second, evaluate the rules every second.
        prom_port = free_port()
        rules = fast_rules(tmp_path / "rps-accuracy.yml")
        (tmp_path / "prometheus.yml").write_text(json.dumps({
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(rules)],
            "alerting": {"alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{am_port}"]}]}]},
            "scrape_configs": [{"job_name": "rps-serve", "static_configs": [{"targets": [f"127.0.0.1:{serve_port}"]}]}],
        }))
        procs.start("prometheus", [prometheus, f"--config.file={tmp_path / 'prometheus.yml'}", f"--storage.tsdb.path={tmp_path / 'prom-data'}",
                                   f"--web.listen-address=127.0.0.1:{prom_port}", "--rules.alert.resend-delay=1s"])

        # Prometheus fires it ...
        def firing():
            status, body = http("GET", f"http://127.0.0.1:{prom_port}/api/v1/alerts")
            alerts = body["data"]["alerts"] if status == 200 else []
            return [a for a in alerts if a["labels"]["alertname"] == "RpsChampionWorseThanHarRv" and a["state"] == "firing"]

        fired = wait_for("Prometheus to fire RpsChampionWorseThanHarRv", firing, deadline, procs)
        assert fired[0]["labels"]["symbol"] == SYMBOL and fired[0]["labels"]["action"] == "retrain"
        # ... and it is the only accuracy alert: coverage is 80 % and the newest bar is an hour old.
        status, body = http("GET", f"http://127.0.0.1:{prom_port}/api/v1/alerts")
        assert {a["labels"]["alertname"] for a in body["data"]["alerts"]} == {"RpsChampionWorseThanHarRv"}

        # ... Airflow is ready (database, serialized DAG, API server) ...
        prep.join(timeout=max(1, deadline - time.monotonic()))
        assert not prep.is_alive(), f"airflow db migrate / dags reserialize did not finish in time\n{procs.report()}"
        assert prepared.get("ok"), prepared.get("error")

        def token():
            status, body = http("POST", f"{airflow}/auth/token", {"username": USER, "password": PASSWORD})
            return body["access_token"] if status == 201 else None

        jwt = wait_for("Airflow's API server", token, deadline, procs, interval=1)

        # ... and the run appears, with the alert in its conf.
        def runs():
            status, body = http("GET", f"{airflow}/api/v2/dags/{DAG_ID}/dagRuns", token=jwt)
            assert status == 200, body
            return body["dag_runs"] or None

        created = wait_for(f"a run of {DAG_ID} created by the alert", runs, deadline, procs)
        assert len(created) == 1, created
        run = created[0]
        assert run["dag_run_id"].startswith("alert__RpsChampionWorseThanHarRv__"), run
        assert run["conf"]["alertname"] == "RpsChampionWorseThanHarRv"
        assert run["conf"]["symbol"] == SYMBOL
        starts_at = dt.datetime.fromisoformat(run["conf"]["starts_at"])
        assert wall_start - dt.timedelta(seconds=5) <= starts_at <= dt.datetime.now(dt.timezone.utc), run["conf"]
        assert run["run_type"] == "manual"

        # Alertmanager repeats the notification (repeat_interval 2s): the hook sees the run exists.
        def repeats():
            status, text = http("GET", f"{hook}/metrics")
            exists = metric(text, "rps_alert_hook_triggers_total", result="exists") if status == 200 else None
            return exists if exists and exists >= 2 else None

        wait_for("two repeat notifications of the alert at the hook", repeats, deadline, procs)
        status, text = http("GET", f"{hook}/metrics")
        assert metric(text, "rps_alert_hook_triggers_total", result="created") == 1
        # The alert may fire before Airflow's API server is up: the hook then answered 503
        # (reason="unavailable") and Alertmanager retried, which is the design. Refusals are not.
        assert metric(text, "rps_alert_hook_trigger_failures_total", reason="auth") == 0
        assert metric(text, "rps_alert_hook_trigger_failures_total", reason="rejected") == 0
        assert len(runs()) == 1, "a repeat notification created a second DAG run"
        active_at = firing()[0]["activeAt"]

        # The run retrains: the pipeline's stages on the unchanged data. The new version is no
        # better than the champion, so the gate does not promote it.
        aliases_file = registry / MODEL / "aliases.json"
        for stage in STAGES:
            out = run_stage(stage, project, env=stage_env(NO_COLOR="1"))
        assert "not promoted" in out.stdout + out.stderr, out.stderr[-3000:]
        aliases = json.loads(aliases_file.read_text())
        assert aliases["champion"] == champion, aliases
        versions = sorted(int(v.name) for v in (registry / MODEL / "versions").iterdir() if v.name.isdigit())
        assert versions[-1] > champion, f"retraining registered no new version: {versions}"
        # What the DAG's refresh_serving does: rps serve reloads, and still serves the champion.
        status, body = http("POST", f"http://127.0.0.1:{serve_port}/refresh", {}, token=SERVE_TOKEN)
        assert status == 200, body
        status, body = http("GET", f"http://127.0.0.1:{serve_port}/model")
        assert status == 200 and body["alias"] == "champion" and body["version"] == champion, body
        # The alert keeps firing: after more rule evaluations (every second) than the scores'
        # refresh (every second) needs, it is the same firing alert, never resolved in between.
        time.sleep(5)
        still = firing()
        assert still and still[0]["activeAt"] == active_at, (still, active_at)
        status, text = http("GET", scrape)
        assert metric(text, "rps_score_qlike_ratio_vs_har", symbol=SYMBOL, alias="champion", window="7d") == pytest.approx(1.2, rel=1e-6)
        status, text = http("GET", f"{hook}/metrics")
        assert metric(text, "rps_alert_hook_triggers_total", result="created") == 1
        assert len(runs()) == 1, "the alert, still firing, created a second DAG run"
        print(f"retrain loop end to end in {time.monotonic() - started:.1f} s")
    finally:
        procs.stop()
        prep.join(timeout=30)
        subprocess.run(["psql", postgres, "-qc", f"DROP DATABASE IF EXISTS {db}"], capture_output=True, timeout=60)
