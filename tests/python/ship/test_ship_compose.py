"""docker/docker-compose.yml: valid for the Compose CLI (compose-spec schema, interpolation), and
the stack it describes: services, health checks, volumes, .env names, the monitoring mounts."""

import json
import pathlib
import re

import pytest
import yaml

from ship_helpers import DOCKER, MONITORING, ROOT, option_names, run, tool

COMPOSE = DOCKER / "docker-compose.yml"
REQUIRED = ["MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD", "RPS_SERVE_TOKEN", "GRAFANA_ADMIN_PASSWORD", "POSTGRES_PASSWORD", "AIRFLOW_API_PASSWORD"]
LONG_RUNNING = ["minio", "mlflow", "airflow", "prometheus", "grafana", "rps-serve", "postgres", "kafka", "alertmanager", "rps-alert-hook"]
# Every long-running service has a health check; rps-serve's image is FROM scratch (no shell, no
# curl), so its check is `rps probe`. rps-stream-consume is long-running too but has no HTTP port:
# its check is `rps probe --file` on the heartbeat file it writes (see test_stream_consume).
STREAM = ["postgres", "kafka", "rps-stream-migrate", "rps-stream-consume", "rps-stream-produce"]
ONE_SHOT = ["minio-init", "rps-stream-migrate", "rps-stream-produce"]
RPS_IMAGE_SERVICES = ["rps-serve", "rps-stream-migrate", "rps-stream-consume", "rps-stream-produce", "rps-alert-hook"]


def compose(*args, env_file=None, profiles=()):
    cmd = [tool("docker-compose")]
    if env_file:
        cmd += ["--env-file", env_file]
    for p in profiles:
        cmd += ["--profile", p]
    return run(*cmd, "-f", COMPOSE, *args, cwd=ROOT)


@pytest.fixture(scope="module")
def env_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("compose") / ".env"
    path.write_text("".join(f"{name}=dummy-{name.lower()}\n" for name in REQUIRED))
    return path


@pytest.fixture(scope="module")
def config(env_file):
    out = compose("config", "--format", "json", env_file=env_file, profiles=["tools"])
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_compose_cli_validates_the_file(env_file):
    out = compose("config", "--quiet", env_file=env_file)
    assert out.returncode == 0, out.stderr


def test_compose_cli_rejects_a_schema_error(env_file, tmp_path):
    bad = DOCKER / ".ship-test-bad-compose.yml"
    bad.write_text(COMPOSE.read_text().replace("    healthcheck:", "    healthchek:", 1))
    try:
        out = run(tool("docker-compose"), "--env-file", env_file, "-f", bad, "config", "--quiet", cwd=ROOT)
    finally:
        bad.unlink()
    assert out.returncode != 0
    assert "healthchek" in out.stderr


def test_secrets_have_no_defaults():
    out = compose("config", "--quiet", env_file=None)
    assert out.returncode != 0, "without .env the stack must refuse to start (no default passwords)"
    for name in REQUIRED:
        assert f"required variable {name} is missing" in out.stderr


def test_every_use_of_a_secret_is_required():
    """Not one `${SECRET:-default}` anywhere: each occurrence of a password, token or key is `:?`
    (a single defaulted use would start a service with a known password)."""
    text = COMPOSE.read_text()
    uses = re.findall(r"\$\{([A-Z][A-Z0-9_]*)(:?[?-])?", text)
    secret = [(n, op) for n, op in uses if re.search(r"PASSWORD|TOKEN|SECRET|ROOT_USER", n)]
    assert {n for n, _ in secret} >= set(REQUIRED)
    for name, op in secret:
        assert op == ":?", f"${{{name}}} used with {op or 'no'} default"


def test_services(config):
    services = set(config["services"])
    assert set(LONG_RUNNING) | set(ONE_SHOT) | {"rps-stream-consume", "rps"} == services


def test_health_checks(config):
    for name in LONG_RUNNING:
        service = config["services"][name]
        check = service.get("healthcheck")
        assert check and check["test"][0] == "CMD" and not check.get("disable"), name
        assert check.get("interval") and check.get("retries"), name
    assert config["services"]["rps-serve"]["healthcheck"]["test"] == ["CMD", "/rps", "probe", "http://127.0.0.1:8080/ready"]


def test_dependencies_wait_for_health(config):
    s = config["services"]
    assert s["minio-init"]["depends_on"]["minio"]["condition"] == "service_healthy"
    assert s["mlflow"]["depends_on"]["minio-init"]["condition"] == "service_completed_successfully"
    assert s["airflow"]["depends_on"]["mlflow"]["condition"] == "service_healthy"
    assert s["grafana"]["depends_on"]["prometheus"]["condition"] == "service_healthy"
    assert s["rps-stream-migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    consume = s["rps-stream-consume"]["depends_on"]
    assert consume["postgres"]["condition"] == "service_healthy"
    assert consume["kafka"]["condition"] == "service_healthy"
    assert consume["rps-stream-migrate"]["condition"] == "service_completed_successfully"
    assert consume["mlflow"]["condition"] == "service_healthy"  # the registry of the live models
    assert s["rps-stream-produce"]["depends_on"]["kafka"]["condition"] == "service_healthy"


# Started, not healthy, on purpose: rps serve is unready until the first model is trained, and
# Prometheus must scrape (and alert) meanwhile.
STARTED_ONLY = {("prometheus", "rps-serve")}


def test_every_dependency_waits_for_a_condition(config):
    """Every dependency waits for health (services with a check) or success (one-shots)."""
    for name, svc in config["services"].items():
        for dep, spec in svc.get("depends_on", {}).items():
            if (name, dep) in STARTED_ONLY:
                assert spec["condition"] == "service_started", (name, dep)
            elif dep in ONE_SHOT:
                assert spec["condition"] == "service_completed_successfully", (name, dep)
            else:
                assert "healthcheck" in config["services"][dep], (name, dep)
                assert spec["condition"] == "service_healthy", (name, dep)


def test_bucket_creation_is_idempotent(config):
    script = " ".join(config["services"]["minio-init"]["command"])
    assert "mc mb --ignore-existing" in script
    assert config["services"]["minio-init"]["restart"] == "no"


def test_named_volumes(config):
    assert {"minio-data", "mlflow-db", "airflow-home", "rps-home", "prometheus-data", "grafana-data"} <= set(config["volumes"])
    named = {
        (name, m["source"], m["target"])
        for name, svc in config["services"].items()
        for m in svc.get("volumes", [])
        if m["type"] == "volume"
    }
    assert ("minio", "minio-data", "/data") in named
    assert ("mlflow", "mlflow-db", "/mlflow/db") in named
    assert ("rps-serve", "rps-home", "/work/.rps") in named
    assert ("airflow", "rps-home", "/opt/airflow/rps/.rps") in named
    assert {"postgres-data", "kafka-data"} <= set(config["volumes"])
    assert ("postgres", "postgres-data", "/var/lib/postgresql/data") in named
    assert ("kafka", "kafka-data", "/var/lib/kafka/data") in named
    # The consumer reads the registry the DAG writes, never writes it.
    consume = {m["target"]: m for m in config["services"]["rps-stream-consume"]["volumes"]}
    assert consume["/work/.rps"]["source"] == "rps-home" and consume["/work/.rps"]["read_only"] is True


def test_monitoring_is_mounted(config):
    binds = {
        (name, m["source"], m["target"])
        for name, svc in config["services"].items()
        for m in svc.get("volumes", [])
        if m["type"] == "bind"
    }
    for source, service, target in [
        ("monitoring/prometheus.yml", "prometheus", "/etc/prometheus/prometheus.yml"),
        ("monitoring/rules", "prometheus", "/etc/prometheus/rules"),
        ("monitoring/grafana/provisioning", "grafana", "/etc/grafana/provisioning"),
        ("monitoring/grafana/dashboards", "grafana", "/var/lib/grafana/dashboards"),
        ("monitoring/alertmanager.yml", "alertmanager", "/etc/alertmanager/alertmanager.yml"),
    ]:
        assert (service, str(ROOT / source), target) in binds, (service, source)
        assert (ROOT / source).exists(), source


def test_monitoring_files_agree_with_the_stack(config):
    """Prometheus scrapes the compose service, Grafana reads Prometheus by its service name, and the
    dashboards provider reads the folder compose mounts."""
    prom = yaml.safe_load((MONITORING / "prometheus.yml").read_text())
    job = next(j for j in prom["scrape_configs"] if j["job_name"] == "rps-serve")
    targets = [t for sc in job["static_configs"] for t in sc["targets"]]
    assert targets == ["rps-serve:8080"]
    serve_env = config["services"]["rps-serve"]["environment"]
    assert serve_env["RPS_SERVE_BIND"].endswith(":8080")
    assert any(r.startswith("rules/") for r in prom["rule_files"])
    datasources = yaml.safe_load((MONITORING / "grafana/provisioning/datasources/prometheus.yml").read_text())
    assert datasources["datasources"][0]["url"] == "http://prometheus:9090"
    providers = yaml.safe_load((MONITORING / "grafana/provisioning/dashboards/rps.yml").read_text())
    assert providers["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"


def test_rps_serve(config, rps_help):
    s = config["services"]["rps-serve"]
    assert s["build"]["dockerfile"] == "docker/Dockerfile" and s["build"]["target"] == "rps"
    assert s["command"][0] == "serve"
    assert set(option_names(s["command"])) <= rps_help("serve")
    assert "--wait-for-model" in s["command"], "start before the first model is trained"
    assert s["read_only"] is True and s["cap_drop"] == ["ALL"]
    assert s["environment"]["RPS_SERVE_TOKEN"] == "dummy-rps_serve_token"
    # The champion comes from the stack's MLflow registry, where the DAG's evaluate promotes it.
    assert s["environment"]["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    assert config["services"]["airflow"]["environment"]["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    assert s["depends_on"]["mlflow"]["condition"] == "service_healthy"
    assert s["ports"][0]["host_ip"] == "127.0.0.1" and s["ports"][0]["target"] == 8080


def test_airflow_runs_the_dag_locally_with_rps(config):
    a = config["services"]["airflow"]
    assert a["build"]["target"] == "airflow" and a["command"] == ["standalone"]
    env = a["environment"]
    assert env["RPS_AIRFLOW_EXECUTOR"] == "local"
    assert env["RPS_BIN"] == "/usr/local/bin/rps"
    assert env["RPS_AIRFLOW_SERVE_URL"] == "http://rps-serve:8080"
    assert env["AIRFLOW__CORE__LOAD_EXAMPLES"] == "False"
    assert (ROOT / "dags").is_dir()
    assert any(m["target"] == "/opt/airflow/dags" and m["source"] == str(ROOT / "dags") for m in a["volumes"])


def test_mlflow_allows_its_service_name_as_host(config):
    m = config["services"]["mlflow"]
    allowed = next(a for a in m["command"] if a.startswith("--allowed-hosts=")).split("=", 1)[1].split(",")
    assert "mlflow:5000" in allowed and "mlflow" in allowed, "containers call it http://mlflow:5000"
    assert "--serve-artifacts" in m["command"]
    assert m["environment"]["MLFLOW_S3_ENDPOINT_URL"] == "http://minio:9000"


def test_published_ports_bind_to_loopback(config):
    for name, svc in config["services"].items():
        for port in svc.get("ports", []):
            assert port.get("host_ip") == "127.0.0.1", f"{name} publishes {port} beyond loopback"


def test_env_example_has_every_name_and_no_value():
    example = (ROOT / ".env.example").read_text().splitlines()
    entries = [l for l in example if l.strip() and not l.lstrip().startswith("#")]
    names = set()
    for line in entries:
        m = re.fullmatch(r"([A-Z][A-Z0-9_]*)=", line.strip())
        assert m, f".env.example must hold names only, found {line!r}"
        names.add(m.group(1))
    used = set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", COMPOSE.read_text()))
    assert used - names == set(), f"compose variables missing from .env.example: {sorted(used - names)}"


# --------------------------------------------------------------------------------------------
# The streaming stage: PostgreSQL, Kafka, rps stream migrate / consume / produce
# --------------------------------------------------------------------------------------------

DATABASE_URL = "postgres://rps:dummy-postgres_password@postgres:5432/rps"


def test_postgres(config):
    p = config["services"]["postgres"]
    assert p["image"].startswith("docker.io/library/postgres:16")
    env = p["environment"]
    assert env["POSTGRES_PASSWORD"] == "dummy-postgres_password"  # from .env, no default
    assert env["POSTGRES_USER"] == "rps" and env["POSTGRES_DB"] == "rps"
    test = p["healthcheck"]["test"]
    assert test[:2] == ["CMD", "pg_isready"]
    # TCP, not the socket: the image's init server listens on the socket only, so a socket check
    # would call a database still running its init scripts healthy.
    assert "--host=127.0.0.1" in test and "--dbname=rps" in test
    assert p["restart"] == "unless-stopped"


def test_kafka_is_single_node_kraft_reachable_by_service_name(config):
    k = config["services"]["kafka"]
    assert k["image"].startswith("docker.io/apache/kafka:3.9")
    env = k["environment"]
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == f"{env['KAFKA_NODE_ID']}@kafka:9093"
    advertised = dict(l.split("://", 1) for l in env["KAFKA_ADVERTISED_LISTENERS"].split(","))
    assert advertised["INTERNAL"] == "kafka:9092", "containers bootstrap with kafka:9092"
    assert env["KAFKA_INTER_BROKER_LISTENER_NAME"] == "INTERNAL"
    # The host listener advertises the published loopback port.
    (port,) = k["ports"]
    assert advertised["EXTERNAL"] == f"127.0.0.1:{port['published']}"
    assert port["target"] == 9094
    listeners = dict(l.split("://", 1) for l in env["KAFKA_LISTENERS"].split(","))
    assert set(listeners) == set(advertised) | {"CONTROLLER"}
    # One broker: internal topics cannot be replicated three times.
    assert str(env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"]) == "1"
    assert env["KAFKA_LOG_DIRS"] == "/var/lib/kafka/data"
    assert "kafka:9092" in k["healthcheck"]["test"]


def test_stream_services_run_rps_stream_with_valid_flags(config, rps_help):
    s = config["services"]
    for name in ["rps-stream-migrate", "rps-stream-consume", "rps-stream-produce"]:
        svc = s[name]
        assert svc["build"]["dockerfile"] == "docker/Dockerfile" and svc["build"]["target"] == "rps", name
        assert svc["image"] == s["rps-serve"]["image"], name
        command = svc["command"]
        assert command[0] == "stream", name
        assert set(option_names(command)) <= rps_help("stream", command[1]), name
        assert svc["read_only"] is True and svc["cap_drop"] == ["ALL"], name
        assert any(m["target"] == "/work/params.yaml" and m["read_only"] for m in svc["volumes"]), name
        assert svc["environment"]["RPS_PARAMS"] == "/work/params.yaml", name
    assert s["rps-stream-migrate"]["command"][:2] == ["stream", "migrate"]
    assert s["rps-stream-consume"]["command"][:2] == ["stream", "consume"]
    assert s["rps-stream-produce"]["command"][:2] == ["stream", "produce"]


def test_stream_database_url_comes_from_the_env_file(config):
    for name in ["rps-stream-migrate", "rps-stream-consume", "rps-serve", "airflow"]:
        assert config["services"][name]["environment"]["DATABASE_URL"] == DATABASE_URL, name
    assert "DATABASE_URL" not in config["services"]["rps-stream-produce"]["environment"]


def test_stream_consume(config, rps_help):
    c = config["services"]["rps-stream-consume"]
    assert c["restart"] == "unless-stopped"
    env = c["environment"]
    # No HTTP port: the check is the age of the heartbeat file consume writes every 10 s, on
    # the tmpfs (the root filesystem is read-only).
    heartbeat = env["RPS_STREAM_HEARTBEAT_FILE"]
    test = c["healthcheck"]["test"]
    assert test[:4] == ["CMD", "/rps", "probe", "--file"] and test[4] == heartbeat, test
    assert float(test[test.index("--max-age") + 1]) >= 30, "at least three beats"
    assert set(option_names(test)) <= rps_help("probe")
    assert c["read_only"] and heartbeat.startswith("/tmp/") and "/tmp" in c["tmpfs"]
    assert env["RPS_KAFKA_BROKERS"] == "kafka:9092"
    # The same registry as rps serve: the stack's MLflow, artifacts in MinIO.
    serve = config["services"]["rps-serve"]["environment"]
    for key in ["MLFLOW_TRACKING_URI", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL"]:
        assert env[key] == serve[key], key
    assert "--idle-exit" not in option_names(c["command"]), "runs until stopped"


def test_stream_one_shots(config):
    s = config["services"]
    for name in ["rps-stream-migrate", "rps-stream-produce"]:
        assert s[name]["restart"] == "no", name
    produce = s["rps-stream-produce"]
    args = dict(a.split("=", 1) for a in produce["command"] if a.startswith("--") and "=" in a)
    assert float(args["--speed"]) > 0, "a replay paced like a live feed"
    # The bundled sample, mounted read-only where --input points.
    sample = next(m for m in produce["volumes"] if m["target"] == "/work/data/sample")
    assert sample["type"] == "bind" and sample["read_only"] is True
    assert sample["source"] == str(ROOT / "data/sample")
    assert args["--input"].startswith("/work/data/sample/")
    assert (ROOT / "data/sample" / pathlib.Path(args["--input"]).name).is_file()
    assert produce["environment"]["RPS_KAFKA_BROKERS"] == "kafka:9092"


def test_airflow_reconciles_the_stream_after_evaluate(config):
    env = config["services"]["airflow"]["environment"]
    assert env["RPS_AIRFLOW_STREAM_RECONCILE"] == "true"


def test_rps_containers_are_hardened(config):
    for name in RPS_IMAGE_SERVICES:
        svc = config["services"][name]
        assert svc["read_only"] is True, name
        assert svc["cap_drop"] == ["ALL"], name
        assert "no-new-privileges:true" in svc["security_opt"], name


def test_the_retraining_loop(config, rps_help):
    """Prometheus sends to the compose Alertmanager, whose retrain route reaches rps-alert-hook,
    which calls the compose Airflow with credentials from .env only."""
    s = config["services"]
    prom = yaml.safe_load((MONITORING / "prometheus.yml").read_text())
    targets = [t for am in prom["alerting"]["alertmanagers"] for sc in am["static_configs"] for t in sc["targets"]]
    assert targets == ["alertmanager:9093"]
    assert s["prometheus"]["depends_on"]["alertmanager"]["condition"] == "service_healthy"
    am = yaml.safe_load((MONITORING / "alertmanager.yml").read_text())
    (route,) = [r for r in am["route"]["routes"] if r["receiver"] == "retrain"]
    assert route["matchers"] == ['action="retrain"']
    (receiver,) = [r for r in am["receivers"] if r["name"] == "retrain"]
    hook = s["rps-alert-hook"]
    port = hook["environment"]["RPS_ALERT_HOOK_BIND"].rsplit(":", 1)[1]
    assert receiver["webhook_configs"][0]["url"] == f"http://rps-alert-hook:{port}/alerts"
    assert hook["command"][0] == "alert-hook"
    assert set(option_names(hook["command"])) <= rps_help("alert-hook")
    assert hook["environment"]["RPS_AIRFLOW_URL"] == "http://airflow:8080"
    assert hook["environment"]["RPS_AIRFLOW_PASSWORD"] == "dummy-airflow_api_password"
    assert hook["depends_on"]["airflow"]["condition"] == "service_healthy"
    assert hook["healthcheck"]["test"] == ["CMD", "/rps", "probe", f"http://127.0.0.1:{port}/health"]
