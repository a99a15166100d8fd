"""deploy/k8s: schema-valid for Kubernetes (kubernetes-validate, strict, oldest and newest
supported versions), and the deployment it describes; names agree with the Airflow DAG's."""

import re

import pytest

from ship_helpers import K8S, MONITORING, ROOT, load_all, option_names, run, tool, workspace_version

import yaml

VERSIONS = ["1.30.0", "1.37.0"]  # the preStop sleep action needs >= 1.30
NOT_IN_SCHEMAS = {"Kustomization", "ServiceMonitor"}  # checked by hand below
SELECTOR = {"app.kubernetes.io/name": "rps", "app.kubernetes.io/component": "serve"}
DAG = ROOT / "dags" / "crypto_volatility_pipeline.py"


def manifests() -> list:
    return sorted(p for p in K8S.glob("*.yaml"))


def resources() -> dict[tuple[str, str], dict]:
    out = {}
    for path in manifests():
        for doc in load_all(path):
            out[(doc["kind"], doc["metadata"]["name"] if "metadata" in doc else path.name)] = doc
    return out


@pytest.fixture(scope="module")
def res():
    return resources()


@pytest.fixture(scope="module")
def deployment(res):
    return res[("Deployment", "rps-serve")]


@pytest.fixture(scope="module")
def container(deployment):
    (c,) = deployment["spec"]["template"]["spec"]["containers"]
    return c


@pytest.mark.parametrize("version", VERSIONS)
def test_schema_valid(version):
    out = run(tool("kubernetes-validate"), "--strict", "-k", version, *manifests())
    assert out.returncode == 0, out.stdout + out.stderr
    validated = set(re.findall(r"passed for resource (\S+)/", out.stdout))
    kinds = {doc["kind"].lower() for p in manifests() for doc in load_all(p)} - {k.lower() for k in NOT_IN_SCHEMAS}
    assert kinds <= validated, f"not validated: {kinds - validated}"


def test_schema_check_can_fail(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text((K8S / "serve.yaml").read_text().replace("readOnlyRootFilesystem", "readOnlyRootFileSystem"))
    out = run(tool("kubernetes-validate"), "--strict", "--quiet", bad)
    assert out.returncode != 0 and "readOnlyRootFileSystem" in out.stdout


def test_everything_is_in_the_rps_namespace(res):
    for (kind, name), doc in res.items():
        if kind in {"Namespace", "Kustomization"}:
            continue
        assert doc["metadata"].get("namespace") == "rps", f"{kind}/{name}"
    ns = res[("Namespace", "rps")]
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


def test_kustomization_lists_the_cluster_resources():
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    listed = set(kustomization["resources"])
    optional = {"kustomization.yaml", "servicemonitor.yaml", "secrets.example.yaml"}
    assert listed == {p.name for p in manifests()} - optional
    (image,) = kustomization["images"]
    assert image["newTag"] == workspace_version()


def test_serve_probes_ports_and_resources(container, rps_help):
    assert container["image"] == f"ghcr.io/rps-mlops/rps:{workspace_version()}"
    (port,) = container["ports"]
    assert (port["name"], port["containerPort"]) == ("http", 8080)
    env = {e["name"]: e for e in container["env"]}
    assert env["RPS_SERVE_BIND"]["value"] == "0.0.0.0:8080"
    assert container["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    assert container["startupProbe"]["httpGet"]["path"] == "/health"
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(container["resources"][kind]), kind
    assert container["args"][0] == "serve"
    assert set(option_names(container["args"])) <= rps_help("serve")
    registry = next(a for a in container["args"] if a.startswith("--registry=")).split("=", 1)[1]
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert registry.startswith("/var/lib/rps/") and mounts["/var/lib/rps"]["readOnly"] is True
    token = env["RPS_SERVE_TOKEN"]["valueFrom"]["secretKeyRef"]
    assert (token["name"], token["key"]) == ("rps-serve", "RPS_SERVE_TOKEN")
    assert "value" not in env["RPS_SERVE_TOKEN"]
    # The same settings and credentials as the stage pods, so serve reads the registry they write.
    sources = {(next(iter(k for k in f if k != "prefix")), f[next(iter(k for k in f if k != "prefix"))]["name"]) for f in container["envFrom"]}
    assert sources == {("configMapRef", "rps-env"), ("secretRef", "rps-mlflow"), ("secretRef", "rps-s3")}
    assert all(next(iter(f.values()))["optional"] is True for f in container["envFrom"])


def test_serve_runs_non_root_read_only(deployment, container):
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 65532
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    assert pod["automountServiceAccountToken"] is False
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]


def test_scrape_annotations_and_service_monitor(deployment, res):
    ann = deployment["spec"]["template"]["metadata"]["annotations"]
    assert ann["prometheus.io/scrape"] == "true" and ann["prometheus.io/port"] == "8080"
    assert ann["prometheus.io/path"] == "/metrics"
    sm = res[("ServiceMonitor", "rps-serve")]
    assert sm["apiVersion"] == "monitoring.coreos.com/v1"
    assert sm["spec"]["selector"]["matchLabels"] == SELECTOR
    (endpoint,) = sm["spec"]["endpoints"]
    assert endpoint["port"] == "http" and endpoint["path"] == "/metrics"
    # The alert rules and dashboards select job="rps-serve", as in monitoring/prometheus.yml.
    assert {"targetLabel": "job", "replacement": "rps-serve"} in endpoint["relabelings"]
    prom = yaml.safe_load((MONITORING / "prometheus.yml").read_text())
    assert any(j["job_name"] == "rps-serve" for j in prom["scrape_configs"])


def test_selectors_match_the_pods(deployment, res):
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"] == SELECTOR
    assert SELECTOR.items() <= labels.items()
    service = res[("Service", "rps-serve")]
    assert service["spec"]["selector"] == SELECTOR
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    assert res[("PodDisruptionBudget", "rps-serve")]["spec"]["selector"]["matchLabels"] == SELECTOR
    assert res[("PodDisruptionBudget", "rps-serve")]["spec"]["minAvailable"] < deployment["spec"]["replicas"]
    assert res[("NetworkPolicy", "rps-serve")]["spec"]["podSelector"]["matchLabels"] == SELECTOR


def test_hpa_scales_the_deployment_on_cpu(res, deployment):
    hpa = res[("HorizontalPodAutoscaler", "rps-serve")]
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "rps-serve"}
    (metric,) = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu" and metric["resource"]["target"]["type"] == "Utilization"
    assert hpa["spec"]["minReplicas"] >= 2 and hpa["spec"]["maxReplicas"] > hpa["spec"]["minReplicas"]
    assert deployment["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["cpu"], "HPA on CPU needs a request"


def test_rbac_lets_airflow_run_pods(res):
    role = res[("Role", "rps-pod-launcher")]
    rules = {(r, v) for rule in role["rules"] for r in rule["resources"] for v in rule["verbs"]}
    for verb in ("create", "get", "list", "watch", "delete"):
        assert ("pods", verb) in rules
    assert ("pods/log", "get") in rules
    assert not any(r == "secrets" for r, _ in rules), "Airflow needs no access to Secrets"
    binding = res[("RoleBinding", "rps-pod-launcher")]
    assert binding["roleRef"]["name"] == "rps-pod-launcher"
    assert all(s["kind"] == "ServiceAccount" for s in binding["subjects"])
    for sa in ("rps-serve", "rps-pipeline", "rps-stream"):
        assert res[("ServiceAccount", sa)]["automountServiceAccountToken"] is False


def test_secret_templates_hold_no_values(res):
    secrets = [doc for (kind, _), doc in res.items() if kind == "Secret"]
    assert secrets
    for s in secrets:
        assert "data" not in s, "templates use stringData with empty values"
        assert s["stringData"] and all(v == "" for v in s["stringData"].values()), s["metadata"]["name"]
    in_kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"]
    assert "secrets.example.yaml" not in in_kustomization


def test_names_agree_with_the_airflow_dag(res):
    if not DAG.exists():
        pytest.skip(f"{DAG} is not there")
    dag = DAG.read_text()

    def default(var):
        m = re.search(rf'_get\(env, "{var}", "([^"]+)"\)', dag)
        assert m, f"the DAG has no default for {var}"
        return m.group(1)

    assert default("RPS_AIRFLOW_NAMESPACE") == "rps"
    assert ("ServiceAccount", default("RPS_AIRFLOW_SERVICE_ACCOUNT")) in res
    assert ("PersistentVolumeClaim", default("RPS_AIRFLOW_DATA_PVC")) in res
    assert ("ConfigMap", default("RPS_AIRFLOW_ENV_CONFIGMAP")) in res
    groups = re.search(r"SECRET_GROUPS[^=]*=\s*\{(.*?)\n\}", dag, re.S).group(1)
    found = re.findall(r'\("([a-z0-9-]+)", \(([^)]*)\)\)', groups)
    assert len(found) >= 4, f"could not read SECRET_GROUPS from the DAG: {found}"
    for name, keys in found:
        secret = res.get(("Secret", name))
        assert secret, f"no Secret template {name}"
        assert set(re.findall(r'"([A-Z0-9_]+)"', keys)) == set(secret["stringData"]), name
    assert ("Secret", "rps-serve") in res
    assert ("Secret", "rps-stream") in res
    # Stage pods run as the image's user and mount the PVC where the DAG says RPS_HOME is.
    assert re.search(r"^RUN_AS = 65532\b", dag, re.M)
    assert re.search(r'^POD_HOME = "/var/lib/rps"', dag, re.M)


# --------------------------------------------------------------------------------------------
# rps stream consume (stream.yaml)
# --------------------------------------------------------------------------------------------

STREAM_SELECTOR = {"app.kubernetes.io/name": "rps", "app.kubernetes.io/component": "stream-consume"}


@pytest.fixture(scope="module")
def consumer(res):
    return res[("Deployment", "rps-stream-consume")]


@pytest.fixture(scope="module")
def consumer_container(consumer):
    (c,) = consumer["spec"]["template"]["spec"]["containers"]
    return c


def test_the_consumer_is_one_pod_replaced_not_rolled(consumer):
    # One consumer name per set of partitions: never two pods at once, not even during a rollout.
    assert consumer["spec"]["replicas"] == 1
    assert consumer["spec"]["strategy"] == {"type": "Recreate"}
    assert "stream.yaml" in yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"]


def test_no_autoscaler_or_second_deployment_runs_the_consumer(res):
    for (kind, name), doc in res.items():
        if kind == "HorizontalPodAutoscaler":
            assert doc["spec"]["scaleTargetRef"]["name"] != "rps-stream-consume", name
        if kind == "Deployment" and name != "rps-stream-consume":
            (c,) = doc["spec"]["template"]["spec"]["containers"]
            assert c.get("args", [])[:2] != ["stream", "consume"], name


def test_the_consumer_runs_rps_stream_consume(consumer_container, rps_help):
    c = consumer_container
    assert c["image"] == f"ghcr.io/rps-mlops/rps:{workspace_version()}"
    assert c["args"][:2] == ["stream", "consume"]
    assert set(option_names(c["args"])) <= rps_help("stream", "consume")
    assert "--idle-exit" not in option_names(c["args"]) and "--max-messages" not in option_names(c["args"])
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(c["resources"][kind]), kind
    assert "ports" not in c, "consume listens on nothing"


def test_a_hung_consumer_is_restarted_by_its_heartbeat_probe(consumer, consumer_container, rps_help):
    # No HTTP port and no shell: consume writes a heartbeat file every 10 s and `rps probe
    # --file` checks its age; the file lives on a writable emptyDir (the root is read-only).
    c = consumer_container
    env = {e["name"]: e for e in c["env"]}
    heartbeat = env["RPS_STREAM_HEARTBEAT_FILE"]["value"]
    command = c["livenessProbe"]["exec"]["command"]
    assert command[:4] == ["/rps", "probe", "--file", heartbeat], command
    assert float(command[command.index("--max-age") + 1]) >= 30, "at least three beats"
    assert set(option_names(command)) <= rps_help("probe")
    assert c["securityContext"]["readOnlyRootFilesystem"]
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in consumer["spec"]["template"]["spec"]["volumes"]}
    directory = heartbeat.rsplit("/", 1)[0]
    assert "emptyDir" in volumes[mounts[directory]], "the heartbeat needs a writable volume"


def test_the_consumer_takes_the_database_from_a_secret_and_kafka_from_the_configmap(consumer_container, res):
    env = {e["name"]: e for e in consumer_container["env"]}
    db = env["DATABASE_URL"]
    assert "value" not in db
    ref = db["valueFrom"]["secretKeyRef"]
    assert (ref["name"], ref["key"]) == ("rps-stream", "DATABASE_URL")
    assert not ref.get("optional"), "without a database the pod must not start"
    brokers = env["RPS_KAFKA_BROKERS"]["valueFrom"]["configMapKeyRef"]
    assert (brokers["name"], brokers["key"]) == ("rps-env", "RPS_KAFKA_BROKERS")
    assert "RPS_KAFKA_BROKERS" in res[("ConfigMap", "rps-env")]["data"]
    assert "DATABASE_URL" in res[("Secret", "rps-stream")]["stringData"]
    # No credential as a literal value anywhere in the container's env.
    for name, e in env.items():
        if any(w in name for w in ("PASSWORD", "SECRET", "TOKEN", "DATABASE_URL")):
            assert "value" not in e, name
    # Params, registry and MLflow/S3 settings as for the stage pods and rps serve.
    assert env["RPS_PARAMS"]["value"] == "/etc/rps/params.yaml"
    assert env["RPS_HOME"]["value"] == "/var/lib/rps"
    sources = {(k, v["name"]) for f in consumer_container["envFrom"] for k, v in f.items() if k != "prefix"}
    assert sources == {("configMapRef", "rps-env"), ("secretRef", "rps-mlflow"), ("secretRef", "rps-s3")}


def test_the_consumer_runs_non_root_read_only(consumer, consumer_container):
    pod = consumer["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "rps-stream"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 65532
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    assert pod["automountServiceAccountToken"] is False
    sc = consumer_container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    mounts = {m["mountPath"]: m for m in consumer_container["volumeMounts"]}
    assert mounts["/var/lib/rps"]["readOnly"] is True, "reads the registry, never writes it"
    assert mounts["/etc/rps"]["readOnly"] is True
    assert "/tmp" in mounts
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["rps-data"]["persistentVolumeClaim"]["claimName"] == "rps-data"
    assert volumes["rps-params"]["configMap"]["name"] == "rps-params"


def test_the_consumer_has_no_http_probe_and_says_why(consumer_container):
    """A FROM-scratch image without a shell, and no HTTP port: no HTTP or readiness probe, only
    the heartbeat-file liveness probe (tested above), and the manifest says why."""
    for probe in ("readinessProbe", "startupProbe"):
        assert probe not in consumer_container, probe
    assert "httpGet" not in consumer_container["livenessProbe"]
    text = (K8S / "stream.yaml").read_text()
    assert "serves no HTTP" in text and "heartbeat" in text
    dockerfile = (ROOT / "docker" / "Dockerfile").read_text()
    assert re.search(r"^FROM scratch AS rps$", dockerfile, re.M), "the premise changed: revisit the probe"


def test_the_consumer_selectors_and_network_policy(consumer, res):
    assert consumer["spec"]["selector"]["matchLabels"] == STREAM_SELECTOR
    assert STREAM_SELECTOR.items() <= consumer["spec"]["template"]["metadata"]["labels"].items()
    policy = res[("NetworkPolicy", "rps-stream-consume")]
    assert policy["spec"]["podSelector"]["matchLabels"] == STREAM_SELECTOR
    assert policy["spec"]["policyTypes"] == ["Ingress"] and policy["spec"]["ingress"] == []
    # The serve selector must not catch the consumer's pods (the Service would route to them).
    assert not SELECTOR.items() <= consumer["spec"]["template"]["metadata"]["labels"].items()


def test_serve_reads_the_stream_database_optionally(container):
    env = {e["name"]: e for e in container["env"]}
    ref = env["DATABASE_URL"]["valueFrom"]["secretKeyRef"]
    assert (ref["name"], ref["key"], ref["optional"]) == ("rps-stream", "DATABASE_URL", True)


def test_the_alert_hook_reads_its_airflow_credentials_from_a_secret(res, rps_help):
    hook = res[("Deployment", "rps-alert-hook")]
    pod = hook["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    assert c["args"][0] == "alert-hook"
    assert set(option_names(c["args"])) <= rps_help("alert-hook")
    env = {e["name"]: e for e in c["env"]}
    for name in ("RPS_AIRFLOW_USERNAME", "RPS_AIRFLOW_PASSWORD"):
        ref = env[name]["valueFrom"]["secretKeyRef"]
        assert (ref["name"], ref["key"]) == ("rps-alert-hook", name) and "value" not in env[name]
        assert name in res[("Secret", "rps-alert-hook")]["stringData"]
    port = int(env["RPS_ALERT_HOOK_BIND"]["value"].rsplit(":", 1)[1])
    assert c["ports"][0]["containerPort"] == port
    assert c["readinessProbe"]["httpGet"]["path"] == "/health"
    service = res[("Service", "rps-alert-hook")]
    assert service["spec"]["selector"] == hook["spec"]["selector"]["matchLabels"]
    assert service["spec"]["ports"][0]["port"] == port
    assert pod["automountServiceAccountToken"] is False and c["securityContext"]["readOnlyRootFilesystem"] is True
    assert res[("ServiceAccount", pod["serviceAccountName"])]["automountServiceAccountToken"] is False
    # The params ConfigMap holds the cooldown (retrain.cooldown_minutes).
    params = next(a for a in c["args"] if a.startswith("--params=")).split("=", 1)[1]
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes[mounts[params.rsplit("/", 1)[0]]]["configMap"]["name"] == "rps-params"
