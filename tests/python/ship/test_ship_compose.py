"""docker/docker-compose.yml: valid for the Compose CLI (compose-spec schema, interpolation), and
the stack it describes: services, health checks, volumes, .env names, the monitoring mounts."""

import json
import re

import pytest
import yaml

from ship_helpers import DOCKER, MONITORING, ROOT, option_names, run, tool

COMPOSE = DOCKER / "docker-compose.yml"
REQUIRED = ["MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD", "RPS_SERVE_TOKEN", "GRAFANA_ADMIN_PASSWORD"]
LONG_RUNNING = ["minio", "mlflow", "airflow", "prometheus", "grafana", "rps-serve"]
# Every long-running service has a health check; rps-serve's image is FROM scratch (no shell, no
# curl), so its check is `rps probe`.


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


def test_services(config):
    services = set(config["services"])
    assert set(LONG_RUNNING) | {"minio-init", "rps"} == services


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
