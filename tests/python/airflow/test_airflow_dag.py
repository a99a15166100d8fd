"""The DAG file under real Airflow: import, task graph, KubernetesPodOperator specs, rendering.

Everything here runs in-process without a cluster: pods are built with
`build_pod_request_obj(dry_run=True)`, the same call `KubernetesPodOperator.dry_run()` makes.

The stage tasks sit in a mapped task group (one branch per symbol): their `symbol` is the group's
mapped argument, which Airflow resolves per map index at run time from the `symbols` task's XCom.
Offline, `for_symbol` gives a copy of a task that value (what the resolution yields), then the
template fields are rendered by Airflow as usual. The real resolution is exercised by the
`airflow dags test` runs in test_airflow_local_run.py.
"""

import copy
import os
import sys
from datetime import datetime, timedelta, timezone

import pytest
import yaml

from rps_dag_testing import DAG_FILE, DAGS, K8S_DIR, NO_AIRFLOW, clean_env, dag_module  # noqa: F401 (fixture)

airflow = pytest.importorskip("airflow", reason=NO_AIRFLOW)

from airflow.dag_processing.dagbag import DagBag
from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
from airflow.sdk.exceptions import AirflowException, AirflowFailException
from airflow.serialization.serialized_objects import DagSerialization
from kubernetes.client import models as k8s

PIPELINE = "crypto_volatility_pipeline"
EXTRACT = "crypto_volatility_extract"
CHAIN = ["extract", "quality", "transform", "train", "evaluate"]
# The run's tasks around the per-symbol branches: params.yaml's symbols (rps symbols), the run's
# choice among the sources (Python), the summary (Python).
ONCE = {"params_symbols", "symbols", "summary"}
UTC = timezone.utc


def dagbag(monkeypatch, **settings):
    """Parse the dags folder as the DAG processor does, with exactly these settings."""
    for key in list(os.environ):
        if key not in clean_env():
            monkeypatch.delenv(key)
    for key, value in settings.items():
        monkeypatch.setenv(key, value)
    return DagBag(dag_folder=str(DAGS))


def chain_of(dag):
    """The per-symbol task ids in dependency order, checking they form one straight chain
    (the edges from `symbols` and to `summary` aside: see test_the_run_frames_the_branches)."""
    tasks = [t for t in dag.tasks if t.task_id not in ONCE]
    roots = [t for t in tasks if not (t.upstream_task_ids - ONCE)]
    assert len(roots) == 1, f"{dag.dag_id}: expected one root, got {[t.task_id for t in roots]}"
    order, task = [], roots[0]
    while True:
        order.append(task.task_id)
        downstream = sorted(task.downstream_task_ids - ONCE)
        if not downstream:
            break
        assert len(downstream) == 1, f"{task.task_id} fans out to {downstream}"
        task = dag.get_task(downstream[0])
    assert len(order) == len(tasks), "tasks outside the chain"
    return order


def edges_of(dag):
    """Every (upstream, downstream) pair of the graph, without those from `symbols` and to `summary`."""
    return {(t.task_id, d) for t in dag.tasks for d in t.downstream_task_ids if t.task_id not in ONCE and d not in ONCE}


def stage_tasks(dag):
    """The tasks that run rps or the refresh request (not the run's Python tasks)."""
    return [t for t in dag.tasks if t.task_id not in ONCE]


def for_symbol(task, symbol):
    """A copy of a task of the mapped group with its mapped argument resolved to `symbol`
    ('' = the default branch: params.yaml's single symbol, no --symbol)."""
    task = copy.deepcopy(task)
    if getattr(task, "map_index_template", None):  # a task of the mapped group
        task.symbol = symbol
    return task


class FakeRun:
    def __init__(self, run_after):
        self.run_after = run_after


def render(task, symbol="", **context):
    """Render a copy of the task for one symbol, as Airflow does before running it."""
    task = for_symbol(task, symbol)
    context.setdefault("run_id", "manual__test")  # Airflow always has one
    task.render_template_fields(context, jinja_env=task.dag.get_template_env())
    return task


def interval_context(start, end, run_after=None):
    return {
        "data_interval_start": start,
        "data_interval_end": end,
        "dag_run": FakeRun(run_after or end),
        "run_id": f"scheduled__{start.isoformat()}",
    }


def env_of(pod):
    return {e.name: e for e in pod.spec.containers[0].env}


# --------------------------------------------------------------------------------------------
# Import
# --------------------------------------------------------------------------------------------


def test_dagbag_imports_without_errors_and_has_the_two_dags(monkeypatch):
    bag = dagbag(monkeypatch)
    assert bag.import_errors == {}
    assert sorted(bag.dag_ids) == [EXTRACT, PIPELINE]
    for dag in bag.dags.values():
        assert dag.fileloc == str(DAG_FILE)
        # The scheduler stores DAGs serialized: the custom operators must survive it.
        serialized = DagSerialization.to_dict(dag)
        assert serialized["dag"]["dag_id"] == dag.dag_id


def test_local_mode_imports_without_errors(monkeypatch):
    bag = dagbag(monkeypatch, RPS_AIRFLOW_EXECUTOR="local", RPS_BIN="/opt/rps/bin/rps")
    assert bag.import_errors == {}
    assert sorted(bag.dag_ids) == [EXTRACT, PIPELINE]


@pytest.mark.parametrize(
    "name,value",
    [
        ("RPS_AIRFLOW_EXECUTOR", "docker"),
        ("RPS_AIRFLOW_PIPELINE_SCHEDULE", "every tuesday"),
        ("RPS_AIRFLOW_RETRIES", "many"),
        ("RPS_AIRFLOW_RESOURCES", '{"training": {"limits": {"memory": "8Gi"}}}'),
        ("RPS_AIRFLOW_START_DATE", "yesterday"),
        ("RPS_AIRFLOW_STREAM_RECONCILE", "maybe"),
        ("RPS_AIRFLOW_SYMBOLS", "BTC-USDT,ETH/USD"),
        ("RPS_AIRFLOW_SYMBOLS", '["BTC-USDT",'),
    ],
)
def test_a_bad_setting_is_an_import_error_naming_the_variable(monkeypatch, name, value):
    bag = dagbag(monkeypatch, **{name: value})
    assert bag.dag_ids == []
    (error,) = bag.import_errors.values()
    assert name in error, error


# --------------------------------------------------------------------------------------------
# DAG level settings and the task graph
# --------------------------------------------------------------------------------------------


def test_dag_settings(monkeypatch):
    bag = dagbag(monkeypatch)
    pipeline, extract = bag.dags[PIPELINE], bag.dags[EXTRACT]
    for dag in (pipeline, extract):
        assert dag.max_active_runs == 1
        assert dag.catchup is False
        assert dag.start_date == datetime(2017, 1, 1, tzinfo=UTC)
        assert type(dag.timetable).__name__ == "CronDataIntervalTimetable"
    assert pipeline.timetable.expression == "0 0 * * *"  # @daily retrain
    assert extract.timetable.expression == "0 * * * *"  # @hourly data
    assert pipeline.dagrun_timeout == timedelta(hours=6)
    assert extract.dagrun_timeout == timedelta(minutes=50)  # shorter than the hourly period


def test_schedules_and_catchup_are_configurable(monkeypatch):
    bag = dagbag(
        monkeypatch,
        RPS_AIRFLOW_PIPELINE_SCHEDULE="0 3 * * 1",
        RPS_AIRFLOW_EXTRACT_SCHEDULE="none",
        RPS_AIRFLOW_CATCHUP="true",
    )
    assert bag.import_errors == {}
    assert bag.dags[PIPELINE].timetable.expression == "0 3 * * 1"
    assert bag.dags[PIPELINE].catchup is True
    assert type(bag.dags[EXTRACT].timetable).__name__ == "NullTimetable"  # manual runs only


def test_task_order(monkeypatch):
    bag = dagbag(monkeypatch)
    assert chain_of(bag.dags[PIPELINE]) == CHAIN
    assert chain_of(bag.dags[EXTRACT]) == ["extract", "quality"]


def test_the_run_frames_the_branches(monkeypatch):
    """`params_symbols` feeds `symbols`, which feeds every branch; `summary` waits for everything,
    whatever failed."""
    bag = dagbag(monkeypatch, RPS_AIRFLOW_SERVE_URL="http://rps-serve.rps.svc:8080", RPS_AIRFLOW_STREAM_RECONCILE="true")
    for dag in bag.dags.values():
        symbols, summary = dag.get_task("symbols"), dag.get_task("summary")
        assert not dag.get_task("params_symbols").upstream_task_ids
        assert dag.get_task("params_symbols").downstream_task_ids == {"symbols"}
        assert symbols.upstream_task_ids == {"params_symbols"}
        assert not summary.downstream_task_ids
        assert summary.trigger_rule == "all_done"
        assert summary.retries == 0
        leaves = {t.task_id for t in dag.tasks if t.downstream_task_ids == {"summary"}}
        assert summary.upstream_task_ids == leaves
        branch = {t.task_id for t in dag.tasks if t.task_group and t.task_group.group_id == "per_symbol"}
        assert symbols.downstream_task_ids == branch
    assert bag.dags[PIPELINE].get_task("summary").upstream_task_ids == {"reconcile", "refresh_serving"}
    assert bag.dags[EXTRACT].get_task("summary").upstream_task_ids == {"quality"}


def test_every_stage_is_one_task_per_symbol(monkeypatch):
    """A mapped task GROUP over the symbols task's XCom: instance i of a stage follows instance i
    of the stage before it only, so one symbol's failure stops that symbol's branch alone."""
    from airflow.sdk.definitions._internal.expandinput import MappedArgument
    from airflow.sdk.definitions.taskgroup import MappedTaskGroup
    from airflow.sdk.definitions.xcom_arg import PlainXComArg

    bag = dagbag(monkeypatch, RPS_AIRFLOW_SERVE_URL="http://rps-serve.rps.svc:8080", RPS_AIRFLOW_STREAM_RECONCILE="true")
    for dag in bag.dags.values():
        group = dag.task_group.get_task_group_dict()["per_symbol"]
        assert isinstance(group, MappedTaskGroup)
        (expand_arg,) = group._expand_input.value.values()
        assert isinstance(expand_arg, PlainXComArg) and expand_arg.operator.task_id == "symbols"
        members = {t.task_id for t in group}
        assert members == set(CHAIN if dag.dag_id == PIPELINE else CHAIN[:2]) | ({"reconcile"} if dag.dag_id == PIPELINE else set())
        for task_id in members:
            task = dag.get_task(task_id)
            assert isinstance(task.symbol, MappedArgument), task_id  # resolved per map index
            assert task.map_index_template  # the UI labels each instance with its symbol
            assert "symbol" in task.template_fields
    # Once per run, outside the group: rps serve reloads all its models at once.
    refresh = bag.dags[PIPELINE].get_task("refresh_serving")
    assert refresh.task_group.group_id is None
    assert refresh.trigger_rule == "all_done_min_one_success"


def test_refresh_serving_is_added_after_evaluate_when_configured(monkeypatch):
    bag = dagbag(monkeypatch, RPS_AIRFLOW_SERVE_URL="http://rps-serve.rps.svc:8080/")
    assert chain_of(bag.dags[PIPELINE]) == [*CHAIN, "refresh_serving"]
    assert chain_of(bag.dags[EXTRACT]) == ["extract", "quality"]


def test_reconcile_is_off_without_its_setting(monkeypatch):
    """Installations without a stream database keep the five tasks (and need no rps-stream Secret)."""
    for value in (None, "", "false"):
        bag = dagbag(monkeypatch, **({} if value is None else {"RPS_AIRFLOW_STREAM_RECONCILE": value}))
        assert "reconcile" not in bag.dags[PIPELINE].task_ids, value
        assert chain_of(bag.dags[PIPELINE]) == CHAIN


def test_reconcile_follows_evaluate_when_enabled(monkeypatch):
    bag = dagbag(monkeypatch, RPS_AIRFLOW_STREAM_RECONCILE="true")
    assert bag.import_errors == {}
    dag = bag.dags[PIPELINE]
    assert edges_of(dag) == {*zip(CHAIN, CHAIN[1:]), ("evaluate", "reconcile")}
    assert dag.get_task("reconcile").trigger_rule == "all_success"  # not after a failed evaluate
    assert chain_of(bag.dags[EXTRACT]) == ["extract", "quality"]  # the hourly DAG promotes nothing


def test_reconcile_runs_beside_refresh_serving_not_behind_it(monkeypatch):
    """A stream database that is down must not keep the new champion from being served."""
    bag = dagbag(monkeypatch, RPS_AIRFLOW_STREAM_RECONCILE="1", RPS_AIRFLOW_SERVE_URL="http://rps-serve.rps.svc:8080")
    dag = bag.dags[PIPELINE]
    assert edges_of(dag) == {*zip(CHAIN, CHAIN[1:]), ("evaluate", "refresh_serving"), ("evaluate", "reconcile")}
    assert dag.get_task("reconcile").execution_timeout == timedelta(minutes=30)


def test_retries_timeouts_and_quality_stops_the_run(monkeypatch):
    bag = dagbag(monkeypatch)
    dag = bag.dags[PIPELINE]
    expected_timeouts = {"extract": 30, "quality": 10, "transform": 30, "train": 120, "evaluate": 30}
    assert dag.get_task("symbols").execution_timeout == dag.get_task("summary").execution_timeout == timedelta(minutes=5)
    for task in stage_tasks(dag):
        assert task.retries == 3
        assert task.retry_delay == timedelta(minutes=1)
        assert task.retry_exponential_backoff == 2.0
        assert task.max_retry_delay == timedelta(minutes=30)
        assert task.execution_timeout == timedelta(minutes=expected_timeouts[task.task_id])
        # all_success: a failed quality gate leaves transform/train/evaluate upstream_failed
        assert task.trigger_rule == "all_success"


# --------------------------------------------------------------------------------------------
# KubernetesPodOperator: image, command per stage, secrets, pod spec
# --------------------------------------------------------------------------------------------

EXPECTED_ARGS = {
    "extract": ["extract", "--start", "2024-03-01T00:00:00Z", "--end", "2024-03-02T00:00:00Z"],
    "quality": ["quality", "--report-dir", "/var/lib/rps/reports"],
    "transform": ["transform"],
    "train": ["train"],
    # --require-promotion: "not promoted" is exit 9, which the operators record as XCom promoted=false.
    "evaluate": ["evaluate", "--report-dir", "/var/lib/rps/reports", "--require-promotion"],
}
STAGE_SECRETS = {
    "AWS_ACCESS_KEY_ID": ("rps-s3", "AWS_ACCESS_KEY_ID"),
    "AWS_SECRET_ACCESS_KEY": ("rps-s3", "AWS_SECRET_ACCESS_KEY"),
    "MLFLOW_TRACKING_USERNAME": ("rps-mlflow", "MLFLOW_TRACKING_USERNAME"),
    "MLFLOW_TRACKING_PASSWORD": ("rps-mlflow", "MLFLOW_TRACKING_PASSWORD"),
}
MARKET_SECRETS = {"COINCAP_API_KEY": ("rps-market", "COINCAP_API_KEY")}
MARCH_1 = interval_context(datetime(2024, 3, 1, tzinfo=UTC), datetime(2024, 3, 2, tzinfo=UTC))


def secret_env(pod):
    found = {}
    for name, var in env_of(pod).items():
        if var.value_from is not None:
            ref = var.value_from.secret_key_ref
            found[name] = (ref.name, ref.key)
    return found


@pytest.mark.parametrize("dag_id", [PIPELINE, EXTRACT])
def test_every_task_is_a_pod_with_the_configured_image_and_its_command(monkeypatch, dag_id):
    bag = dagbag(
        monkeypatch,
        RPS_AIRFLOW_IMAGE="registry.example.com/rps:1.2.3",
        RPS_AIRFLOW_NAMESPACE="btc",
        RPS_AIRFLOW_SERVICE_ACCOUNT="rps-runner",
    )
    dag = bag.dags[dag_id]
    for task in stage_tasks(dag):
        assert isinstance(task, KubernetesPodOperator), task
        assert task.image == "registry.example.com/rps:1.2.3"
        assert task.namespace == "btc"
        assert task.service_account_name == "rps-runner"
        assert task.on_finish_action.value == "delete_succeeded_pod"
        assert task.do_xcom_push is False
        assert not task.cmds  # the image's entrypoint is rps
        task = render(task, **MARCH_1)  # the default branch: no --symbol
        assert task.arguments == EXPECTED_ARGS[task.task_id]

        pod = task.build_pod_request_obj(dry_run=True)
        (container,) = pod.spec.containers
        assert container.image == "registry.example.com/rps:1.2.3"
        assert container.args == EXPECTED_ARGS[task.task_id]
        assert pod.metadata.namespace == "btc"
        assert pod.spec.service_account_name == "rps-runner"
        assert pod.spec.restart_policy == "Never"
        assert pod.metadata.labels["app.kubernetes.io/component"] == task.task_id

        expected = dict(STAGE_SECRETS, **(MARKET_SECRETS if task.task_id == "extract" else {}))
        assert secret_env(pod) == expected
        env = env_of(pod)
        assert env["RPS_HOME"].value == "/var/lib/rps"
        assert env["RPS_PARAMS"].value == "/etc/rps/params.yaml"
        assert env["RPS_LOG_FORMAT"].value == "json"
        # One DAG run = one MLflow parent run with the stage runs nested under it.
        assert env["RPS_PIPELINE_RUN"].value == MARCH_1["run_id"], env["RPS_PIPELINE_RUN"].value
        assert [e.config_map_ref.name for e in container.env_from] == ["rps-env"]


def test_pod_spec_volumes_security_and_resources(monkeypatch):
    bag = dagbag(monkeypatch)
    task = render(bag.dags[PIPELINE].get_task("train"), **MARCH_1)
    pod = task.build_pod_request_obj(dry_run=True)
    (container,) = pod.spec.containers
    volumes = {v.name: v for v in pod.spec.volumes}
    assert volumes["rps-data"].persistent_volume_claim.claim_name == "rps-data"
    assert volumes["rps-params"].config_map.name == "rps-params"
    mounts = {m.mount_path: m for m in container.volume_mounts}
    assert mounts["/var/lib/rps"].name == "rps-data"
    assert mounts["/etc/rps"].read_only is True
    assert "/tmp" in mounts  # the root file system is read-only
    assert pod.spec.security_context.run_as_non_root is True
    assert pod.spec.security_context.run_as_user == 65532
    assert pod.spec.automount_service_account_token is False
    assert container.security_context.read_only_root_filesystem is True
    assert container.security_context.allow_privilege_escalation is False
    assert container.security_context.capabilities.drop == ["ALL"]
    assert container.resources.requests == {"cpu": "1", "memory": "1Gi"}
    assert container.resources.limits == {"cpu": "2", "memory": "4Gi"}
    assert pod.spec.active_deadline_seconds == 120 * 60 + 60  # never outlives the task timeout


def test_settings_change_the_pods(monkeypatch):
    bag = dagbag(
        monkeypatch,
        RPS_AIRFLOW_MLFLOW_SECRET="dagshub",
        RPS_AIRFLOW_MLFLOW_SECRET_KEYS="MLFLOW_TRACKING_USERNAME,MLFLOW_TRACKING_TOKEN",
        RPS_AIRFLOW_S3_SECRET="",
        RPS_AIRFLOW_RESOURCES='{"train": {"limits": {"memory": "8Gi"}}}',
        RPS_AIRFLOW_IMAGE_PULL_SECRETS="ghcr-pull",
        RPS_AIRFLOW_DATA_PVC="",
        RPS_AIRFLOW_DATA_URI="s3://rps-data/btc/",
        RPS_AIRFLOW_SOURCE="binance",
        RPS_AIRFLOW_POOL="rps",
        RPS_AIRFLOW_TRAIN_TIMEOUT_MINUTES="240",
    )
    assert bag.import_errors == {}
    dag = bag.dags[PIPELINE]
    pods = {t.task_id: render(t, **MARCH_1).build_pod_request_obj(dry_run=True) for t in stage_tasks(dag)}
    assert secret_env(pods["train"]) == {
        "MLFLOW_TRACKING_USERNAME": ("dagshub", "MLFLOW_TRACKING_USERNAME"),
        "MLFLOW_TRACKING_TOKEN": ("dagshub", "MLFLOW_TRACKING_TOKEN"),
    }
    train = pods["train"].spec.containers[0]
    assert train.resources.limits == {"cpu": "2", "memory": "8Gi"}
    assert train.resources.requests == {"cpu": "1", "memory": "1Gi"}
    assert [s.name for s in pods["train"].spec.image_pull_secrets] == ["ghcr-pull"]
    # No claim: the data volume is scratch, the stages exchange data through the data URI.
    data = {v.name: v for v in pods["train"].spec.volumes}["rps-data"]
    assert data.persistent_volume_claim is None and data.empty_dir is not None
    args = {name: pod.spec.containers[0].args for name, pod in pods.items()}
    assert args["extract"] == [
        "extract", "--start", "2024-03-01T00:00:00Z", "--end", "2024-03-02T00:00:00Z",
        "--source", "binance", "--out", "s3://rps-data/btc/raw",
    ]  # fmt: skip
    assert args["quality"] == ["quality", "--input", "s3://rps-data/btc/raw", "--report-dir", "/var/lib/rps/reports"]
    assert args["transform"] == ["transform", "--input", "s3://rps-data/btc/raw", "--out", "s3://rps-data/btc/features"]
    assert args["train"] == [
        "train",
        "--features",
        "s3://rps-data/btc/features",
        "--out",
        "s3://rps-data/btc/models/candidate",
    ]
    assert args["evaluate"] == [
        "evaluate", "--features", "s3://rps-data/btc/features", "--model", "s3://rps-data/btc/models/candidate",
        "--report-dir", "/var/lib/rps/reports", "--require-promotion",
    ]  # fmt: skip
    assert {t.pool for t in dag.tasks} == {"rps"}
    assert dag.get_task("train").execution_timeout == timedelta(hours=4)


def test_reconcile_pod_runs_rps_stream_reconcile_with_the_database_from_its_secret(monkeypatch):
    bag = dagbag(monkeypatch, RPS_AIRFLOW_STREAM_RECONCILE="true", RPS_AIRFLOW_IMAGE="registry.example.com/rps:1.2.3")
    task = render(bag.dags[PIPELINE].get_task("reconcile"), **MARCH_1)
    assert isinstance(task, KubernetesPodOperator)
    assert task.rps_stage == "stream reconcile"
    pod = task.build_pod_request_obj(dry_run=True)
    (container,) = pod.spec.containers
    assert container.image == "registry.example.com/rps:1.2.3"
    assert not container.command  # the image's entrypoint: rps
    assert container.args == ["stream", "reconcile"]
    # The registry (MLflow/S3 or the data volume) like the other stages, plus the database.
    assert secret_env(pod) == dict(STAGE_SECRETS, DATABASE_URL=("rps-stream", "DATABASE_URL"))
    env = env_of(pod)
    assert env["RPS_HOME"].value == "/var/lib/rps"
    assert env["RPS_PARAMS"].value == "/etc/rps/params.yaml"
    assert [e.config_map_ref.name for e in container.env_from] == ["rps-env"]
    assert {v.name for v in pod.spec.volumes} >= {"rps-data", "rps-params", "tmp"}
    assert pod.spec.security_context.run_as_non_root is True
    assert container.security_context.read_only_root_filesystem is True
    assert container.resources.limits == {"cpu": "1", "memory": "1Gi"}
    assert pod.spec.active_deadline_seconds == 30 * 60 + 60
    assert pod.metadata.labels["app.kubernetes.io/component"] == "reconcile"


def test_reconcile_secret_is_configurable(monkeypatch):
    bag = dagbag(
        monkeypatch,
        RPS_AIRFLOW_STREAM_RECONCILE="true",
        RPS_AIRFLOW_STREAM_SECRET="timescale",
        RPS_AIRFLOW_RECONCILE_TIMEOUT_MINUTES="90",
        RPS_AIRFLOW_RESOURCES='{"reconcile": {"limits": {"memory": "4Gi"}}}',
    )
    assert bag.import_errors == {}
    task = render(bag.dags[PIPELINE].get_task("reconcile"), **MARCH_1)
    pod = task.build_pod_request_obj(dry_run=True)
    assert secret_env(pod)["DATABASE_URL"] == ("timescale", "DATABASE_URL")
    assert pod.spec.containers[0].resources.limits["memory"] == "4Gi"
    assert task.execution_timeout == timedelta(minutes=90)
    # The other stages never see the database.
    train = render(bag.dags[PIPELINE].get_task("train"), **MARCH_1).build_pod_request_obj(dry_run=True)
    assert "DATABASE_URL" not in secret_env(train)


def test_refresh_serving_pod_posts_with_the_token_from_its_secret(monkeypatch):
    bag = dagbag(monkeypatch, RPS_AIRFLOW_SERVE_URL="http://rps-serve.rps.svc:8080")
    task = render(bag.dags[PIPELINE].get_task("refresh_serving"), **MARCH_1)
    assert isinstance(task, KubernetesPodOperator)
    pod = task.build_pod_request_obj(dry_run=True)
    (container,) = pod.spec.containers
    assert container.image.startswith("curlimages/curl:")
    assert container.command == ["curl"]
    assert container.args[-1] == "http://rps-serve.rps.svc:8080/refresh"
    # Kubernetes expands $(VAR) from the container env: the token is not in the pod spec.
    assert "Authorization: Bearer $(RPS_SERVE_TOKEN)" in container.args
    assert secret_env(pod) == {"RPS_SERVE_TOKEN": ("rps-serve", "RPS_SERVE_TOKEN")}


# --------------------------------------------------------------------------------------------
# The time window
# --------------------------------------------------------------------------------------------


def test_the_data_interval_renders_as_the_extract_window_in_utc(monkeypatch):
    import pendulum

    bag = dagbag(monkeypatch)
    task = bag.dags[EXTRACT].get_task("extract")
    # A zone other than UTC on the way in still gives UTC instants with a Z.
    start = pendulum.datetime(2024, 3, 1, 13, tz="Europe/Paris")
    task = render(task, **interval_context(start, start.add(hours=1)))
    assert task.arguments == ["extract", "--start", "2024-03-01T12:00:00Z", "--end", "2024-03-01T13:00:00Z"]


@pytest.mark.parametrize(
    "dag_id,expected",
    [
        (EXTRACT, ("2024-03-05T09:00:00Z", "2024-03-05T10:00:00Z")),  # one hourly interval
        (PIPELINE, ("2024-03-04T10:00:00Z", "2024-03-05T10:00:00Z")),  # one daily interval
    ],
)
def test_a_manual_run_without_logical_date_extracts_the_last_interval(monkeypatch, dag_id, expected):
    bag = dagbag(monkeypatch)
    task = bag.dags[dag_id].get_task("extract")
    # Airflow 3 leaves data_interval_* out of the context when a manual run has no logical date.
    task = render(task, dag_run=FakeRun(datetime(2024, 3, 5, 10, 42, 7, tzinfo=UTC)))
    assert task.arguments == ["extract", "--start", expected[0], "--end", expected[1]]


def test_the_window_of_a_real_dagrun_from_the_timetable(monkeypatch):
    """The interval Airflow itself computes for a run (here: a backfill of one day) is the window."""
    from airflow.serialization.encoders import coerce_to_core_timetable

    bag = dagbag(monkeypatch)
    dag = bag.dags[PIPELINE]
    timetable = coerce_to_core_timetable(dag.timetable)
    interval = timetable.infer_manual_data_interval(run_after=datetime(2024, 3, 2, 0, 0, tzinfo=UTC))
    task = render(dag.get_task("extract"), **interval_context(interval.start, interval.end))
    assert task.arguments[1:] == ["--start", "2024-03-01T00:00:00Z", "--end", "2024-03-02T00:00:00Z"]


# --------------------------------------------------------------------------------------------
# One graph, two executors
# --------------------------------------------------------------------------------------------


def test_local_mode_builds_the_identical_graph_with_local_processes(monkeypatch):
    common = {
        "RPS_AIRFLOW_SERVE_URL": "http://127.0.0.1:8080",
        "RPS_AIRFLOW_REPORT_DIR": "/srv/rps/reports",
        "RPS_AIRFLOW_STREAM_RECONCILE": "true",
    }
    pods = dagbag(monkeypatch, **common)
    local = dagbag(monkeypatch, RPS_AIRFLOW_EXECUTOR="local", RPS_BIN="/opt/rps/bin/rps", **common)
    assert "reconcile" in local.dags[PIPELINE].task_ids
    for dag_id in (PIPELINE, EXTRACT):
        k8s_dag, local_dag = pods.dags[dag_id], local.dags[dag_id]
        assert edges_of(local_dag) == edges_of(k8s_dag)
        assert set(local_dag.task_ids) == set(k8s_dag.task_ids)
        for k8s_task in stage_tasks(k8s_dag):
            local_task = local_dag.get_task(k8s_task.task_id)
            assert not isinstance(local_task, KubernetesPodOperator)
            assert type(local_task).__name__ == "RpsLocalOperator"
            for attr in ("retries", "retry_delay", "retry_exponential_backoff", "execution_timeout", "trigger_rule"):
                assert getattr(local_task, attr) == getattr(k8s_task, attr), attr
            if k8s_task.task_id == "refresh_serving":
                assert local_task.arguments[-1] == k8s_task.arguments[-1] == "http://127.0.0.1:8080/refresh"
                continue
            assert local_task.program == "/opt/rps/bin/rps"
            assert local_task.map_index_template == k8s_task.map_index_template
            for symbol in ("", "ETH-USD"):
                k8s_args = render(k8s_task, symbol, **MARCH_1).arguments
                local_args = render(local_task, symbol, **MARCH_1).arguments
                assert local_args == k8s_args  # the same `rps <stage> [--symbol SYM] [flags]`
                assert ("--symbol" in local_args) == bool(symbol)


# --------------------------------------------------------------------------------------------
# Exit codes: deterministic failures are not retried
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "code,permanent",
    [
        (2, True),
        (3, True),
        (4, True),
        (5, True),
        (8, True),
        (9, True),
        (1, False),
        (6, False),
        (7, False),
        (137, False),
    ],
)
def test_exit_codes_decide_retry(dag_module, code, permanent):
    error = dag_module.stage_failure("quality", code)
    assert isinstance(error, AirflowException)
    assert isinstance(error, AirflowFailException) is permanent
    assert f"exited {code}" in str(error)


def failed_pod(exit_code, container="base"):
    return k8s.V1Pod(
        metadata=k8s.V1ObjectMeta(name="rps-quality-abc", namespace="rps", labels={}),
        status=k8s.V1PodStatus(
            phase="Failed",
            container_statuses=[
                k8s.V1ContainerStatus(
                    name=container,
                    image="rps",
                    image_id="",
                    ready=False,
                    restart_count=0,
                    state=k8s.V1ContainerState(terminated=k8s.V1ContainerStateTerminated(exit_code=exit_code)),
                )
            ],
        ),
    )


@pytest.mark.parametrize("code,expected", [(5, AirflowFailException), (6, AirflowException), (137, AirflowException)])
def test_pod_operator_maps_the_pod_exit_code(dag_module, monkeypatch, code, expected):
    task = dag_module.build_dags(dag_module.Settings.from_env({}))[PIPELINE].get_task("quality")
    # No cluster: the bookkeeping calls that talk to the API server are stubbed out.
    for name in ("patch_already_checked", "process_pod_deletion", "_read_pod_container_states", "_read_pod_events"):
        monkeypatch.setattr(task, name, lambda *a, **k: None)
    monkeypatch.setattr(task, "is_istio_enabled", lambda pod: False)
    pod = failed_pod(code)
    with pytest.raises(AirflowException) as raised:
        task.cleanup(pod, pod)
    assert type(raised.value) is expected
    assert f"rps quality exited {code}" in str(raised.value)


@pytest.mark.parametrize("code,expected", [(3, AirflowFailException), (8, AirflowFailException), (6, AirflowException)])
def test_reconcile_pod_exit_codes(dag_module, monkeypatch, code, expected):
    """No database URL (3) or no live model (8) fail at once; PostgreSQL down (6) is retried."""
    settings = dag_module.Settings.from_env({"RPS_AIRFLOW_STREAM_RECONCILE": "true"})
    task = dag_module.build_dags(settings)[PIPELINE].get_task("reconcile")
    for name in ("patch_already_checked", "process_pod_deletion", "_read_pod_container_states", "_read_pod_events"):
        monkeypatch.setattr(task, name, lambda *a, **k: None)
    monkeypatch.setattr(task, "is_istio_enabled", lambda pod: False)
    pod = failed_pod(code)
    with pytest.raises(AirflowException) as raised:
        task.cleanup(pod, pod)
    assert type(raised.value) is expected
    assert f"rps stream reconcile exited {code}" in str(raised.value)


# --------------------------------------------------------------------------------------------
# Deploy material: the manifests provide what the DAG wires
# --------------------------------------------------------------------------------------------


def manifests():
    docs = []
    for path in sorted(K8S_DIR.glob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d and d.get("kind") != "Kustomization"]
    return docs


def test_manifests_define_every_secret_key_the_dag_reads_and_hold_no_values(dag_module):
    docs = manifests()
    secrets = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Secret"}
    for name, keys in dag_module.Settings().secrets.values():
        assert name in secrets, f"Secret {name} missing from deploy/k8s"
        data = secrets[name].get("stringData") or {}
        assert set(keys) <= set(data), f"Secret {name} lacks {set(keys) - set(data)}"
    for secret in secrets.values():
        assert not secret.get("data"), "Secrets must not carry values"
        assert all(v in ("", None) for v in (secret.get("stringData") or {}).values()), "Secrets must not carry values"


def test_manifests_define_the_namespace_account_volume_and_configmaps(dag_module):
    settings = dag_module.Settings()
    docs = manifests()
    by_kind = {}
    for d in docs:
        by_kind.setdefault(d["kind"], {})[d["metadata"]["name"]] = d
        if d["kind"] != "Namespace" and d["kind"] not in ("ClusterRole", "ClusterRoleBinding"):
            assert d["metadata"].get("namespace") == settings.namespace, d["metadata"]
    assert settings.namespace in by_kind["Namespace"]
    assert settings.service_account in by_kind["ServiceAccount"]
    assert settings.data_pvc in by_kind["PersistentVolumeClaim"]
    assert settings.env_configmap in by_kind["ConfigMap"]
    # The Airflow worker may launch, watch and delete pods in the namespace, and read their logs.
    rules = [r for role in by_kind["Role"].values() for r in role["rules"]]
    pod_verbs = {v for r in rules if "pods" in r["resources"] for v in r["verbs"]}
    assert {"create", "get", "list", "watch", "delete", "patch"} <= pod_verbs
    assert any("pods/log" in r["resources"] for r in rules)


def test_helm_values_set_the_dag_settings(dag_module):
    values = yaml.safe_load((DAGS.parent / "airflow" / "helm-values.yaml").read_text())
    env = {e["name"]: e["value"] for e in values["env"]}
    assert env["RPS_AIRFLOW_EXECUTOR"] == "kubernetes"
    assert env["RPS_AIRFLOW_NAMESPACE"] == dag_module.Settings().namespace
    for name in env:
        assert name.startswith(("RPS_AIRFLOW_", "AIRFLOW__")), name
        assert (
            name.startswith("AIRFLOW__")
            or name in DAG_FILE.read_text()
            or name in (K8S_DIR.parent / "README.md").read_text()
        )


@pytest.mark.parametrize("dag_id", [PIPELINE, EXTRACT])
def test_rendered_pods_are_valid_kubernetes_objects(monkeypatch, dag_id):
    """Every pod the DAG would create, against Kubernetes' OpenAPI schema (strict: no unknown fields)."""
    kubernetes_validate = pytest.importorskip("kubernetes_validate", reason="pip install kubernetes-validate")
    from kubernetes.client import ApiClient

    bag = dagbag(monkeypatch, RPS_AIRFLOW_SERVE_URL="http://rps-serve.rps.svc:8080", RPS_AIRFLOW_STREAM_RECONCILE="true")
    for task in stage_tasks(bag.dags[dag_id]):
        for symbol in ("", "ETH-USD"):
            pod = render(task, symbol, **MARCH_1).build_pod_request_obj(dry_run=True)
            manifest = ApiClient().sanitize_for_serialization(pod)
            kubernetes_validate.validate(manifest, "1.37.0", strict=True)


# --------------------------------------------------------------------------------------------
# Many symbols: one pod per symbol and stage, the symbol list, the run's summary
# --------------------------------------------------------------------------------------------

SYMBOLS = ["BTC-USDT", "ETH-USD"]


@pytest.mark.parametrize("dag_id", [PIPELINE, EXTRACT])
def test_one_pod_per_symbol_and_stage_each_with_its_symbol(monkeypatch, dag_id):
    bag = dagbag(monkeypatch, RPS_AIRFLOW_STREAM_RECONCILE="true", RPS_AIRFLOW_SERVE_URL="http://rps-serve.rps.svc:8080")
    dag = bag.dags[dag_id]
    per_symbol = [t for t in stage_tasks(dag) if t.task_id != "refresh_serving"]
    pods = {}
    for symbol in SYMBOLS:
        for task in per_symbol:
            pod = render(task, symbol, **MARCH_1).build_pod_request_obj(dry_run=True)
            pods[symbol, task.task_id] = pod
    assert len(pods) == len(SYMBOLS) * len(per_symbol)
    assert len({p.metadata.name for p in pods.values()}) == len(pods)  # one pod each
    for (symbol, task_id), pod in pods.items():
        args = pod.spec.containers[0].args
        words = 2 if task_id == "reconcile" else 1
        # `rps <stage> --symbol SYM ...`: the global flag right after the stage's words, once.
        assert args[words : words + 2] == ["--symbol", symbol], args
        assert args.count("--symbol") == 1
        assert pod.metadata.labels["rps/symbol"] == symbol
        assert pod.metadata.labels["app.kubernetes.io/component"] == task_id
        if "--report-dir" in args:  # quality, evaluate: reports/<sym>, as rps lays them out
            assert args[args.index("--report-dir") + 1] == f"/var/lib/rps/reports/{symbol}"
    assert pods["ETH-USD", "extract"].spec.containers[0].args == [
        "extract", "--symbol", "ETH-USD", "--start", "2024-03-01T00:00:00Z", "--end", "2024-03-02T00:00:00Z",
    ]  # fmt: skip
    if dag_id == PIPELINE:
        assert pods["BTC-USDT", "reconcile"].spec.containers[0].args == ["stream", "reconcile", "--symbol", "BTC-USDT"]
        assert pods["ETH-USD", "train"].spec.containers[0].args == ["train", "--symbol", "ETH-USD"]


def test_the_data_uri_gets_a_folder_per_symbol(monkeypatch):
    bag = dagbag(monkeypatch, RPS_AIRFLOW_DATA_URI="s3://rps-data/", RPS_AIRFLOW_REPORT_DIR="s3://rps-data/reports")
    dag = bag.dags[PIPELINE]
    args = {t.task_id: render(t, "ETH-USD", **MARCH_1).arguments for t in stage_tasks(dag)}
    assert args["extract"][-2:] == ["--out", "s3://rps-data/raw/ETH-USD"]
    assert args["quality"] == ["quality", "--symbol", "ETH-USD", "--input", "s3://rps-data/raw/ETH-USD", "--report-dir", "s3://rps-data/reports/ETH-USD"]
    assert args["train"] == [
        "train", "--symbol", "ETH-USD", "--features", "s3://rps-data/features/ETH-USD",
        "--out", "s3://rps-data/models/ETH-USD/candidate",
    ]  # fmt: skip
    # The default branch (no symbols configured): the paths of a single-symbol installation.
    default = {t.task_id: render(t, "", **MARCH_1).arguments for t in stage_tasks(dag)}
    assert default["train"] == ["train", "--features", "s3://rps-data/features", "--out", "s3://rps-data/models/candidate"]


@pytest.mark.parametrize("dag_id", [PIPELINE, EXTRACT])
def test_params_symbols_is_a_pod_handing_params_yamls_symbols_over_as_xcom(monkeypatch, dag_id):
    """Kubernetes mode reads params.yaml's symbol list where the stages read it: a pod with the
    params ConfigMap runs `rps symbols --output /airflow/xcom/return.json`, which the pod
    operator's sidecar returns as XCom; local mode runs the same command as a process."""
    bag = dagbag(monkeypatch, RPS_AIRFLOW_IMAGE="registry.example.com/rps:1.2.3")
    task = bag.dags[dag_id].get_task("params_symbols")
    assert isinstance(task, KubernetesPodOperator)
    assert task.do_xcom_push is True
    assert task.task_group.group_id is None and not getattr(task, "map_index_template", None)
    pod = render(task, **MARCH_1).build_pod_request_obj(dry_run=True)
    (container,) = pod.spec.containers[:1]
    assert container.image == "registry.example.com/rps:1.2.3"
    assert container.args == ["symbols", "--output", "/airflow/xcom/return.json"]
    assert env_of(pod)["RPS_PARAMS"].value == "/etc/rps/params.yaml"
    assert {v.name for v in pod.spec.volumes} >= {"rps-params"}
    assert secret_env(pod) == {}  # reads a file, needs no credentials
    assert container.resources.limits == {"cpu": "200m", "memory": "64Mi"}
    assert task.execution_timeout == timedelta(minutes=5)
    kubernetes_validate = pytest.importorskip("kubernetes_validate", reason="pip install kubernetes-validate")
    from kubernetes.client import ApiClient

    kubernetes_validate.validate(ApiClient().sanitize_for_serialization(pod), "1.37.0", strict=True)
    local = dagbag(monkeypatch, RPS_AIRFLOW_EXECUTOR="local", RPS_BIN="/opt/rps/bin/rps").dags[dag_id]
    twin = local.get_task("params_symbols")
    assert type(twin).__name__ == "RpsLocalOperator"
    assert (twin.program, twin.arguments) == ("/opt/rps/bin/rps", ["symbols", "--output", "/airflow/xcom/return.json"])
    assert twin.xcom_file == "/airflow/xcom/return.json"


def test_a_local_task_returns_its_xcom_file(dag_module):
    """The local twin of the pod's XCom sidecar: the file the command wrote, as the task's result
    (the argument naming the pod's path becomes a temporary file); no file is a clear failure."""
    write = "import json, sys; json.dump(['BTC-USDT', 'ETH-USD'], open(sys.argv[1], 'w'))"
    path = dag_module.XCOM_RETURN
    op = dag_module.RpsLocalOperator(
        task_id="params_symbols", rps_stage="symbols", program=sys.executable, arguments=["-c", write, path], xcom_file=path
    )
    assert op.execute({}) == ["BTC-USDT", "ETH-USD"]
    silent = dag_module.RpsLocalOperator(
        task_id="params_symbols", rps_stage="symbols", program=sys.executable, arguments=["-c", "pass", path], xcom_file=path
    )
    with pytest.raises(AirflowFailException, match="no JSON result"):
        silent.execute({})


def test_the_symbol_list_precedence(dag_module):
    choose = dag_module.choose_symbols
    default = ([""], "none configured: params.yaml's single symbol, no --symbol")
    assert choose() == default
    assert choose(listed=["BTC-USDT"]) == default  # one symbol in params.yaml: as before #20
    assert choose(listed=["BTC-USDT", "ETH-USD"]) == (["BTC-USDT", "ETH-USD"], "rps symbols")
    assert choose(setting=("ETH-USD",), listed=SYMBOLS) == (["ETH-USD"], "RPS_AIRFLOW_SYMBOLS")
    assert choose(variable='["SOL-USD", "ETH-USD"]', setting=("ETH-USD",)) == (["SOL-USD", "ETH-USD"], "Variable rps_symbols")
    assert choose(variable="SOL-USD, ETH-USD,") == (["SOL-USD", "ETH-USD"], "Variable rps_symbols")
    assert choose(conf_symbols=["BTC-USDT"], variable="ETH-USD") == (["BTC-USDT"], "dag_run.conf.symbols")
    assert choose(conf_symbols=[], variable="ETH-USD") == (["ETH-USD"], "Variable rps_symbols")  # empty = unset
    # rps alert-hook's conf names the symbol whose champion is worse: only that one retrains.
    assert choose(variable=SYMBOLS, alert_symbol="ETH-USD") == (["ETH-USD"], "Variable rps_symbols, narrowed to dag_run.conf.symbol")
    assert choose(alert_symbol="BTC-USDT") == default  # a single-symbol installation retrains as before
    with pytest.raises(ValueError, match="SOL-USD.*not one of"):
        choose(variable=SYMBOLS, alert_symbol="SOL-USD")
    with pytest.raises(ValueError, match="Variable rps_symbols.*not a symbol name"):
        choose(variable=["BTC/USDT"])
    with pytest.raises(ValueError, match="Variable rps_symbols"):
        choose(variable='{"BTC-USDT": 1}')


def test_the_summary_says_what_became_of_each_symbol(dag_module):
    stages = CHAIN + ["reconcile"]
    states = {"symbols": "success", "refresh_serving": "success"}
    states.update({f"{s}_0": "success" for s in stages})  # BTC-USDT: promoted
    states.update({"extract_1": "success", "quality_1": "failed"})  # ETH-USD: the gate failed
    states.update({f"{s}_1": "upstream_failed" for s in stages[2:]})
    states.update({f"{s}_2": "success" for s in stages})  # SOL-USD: trained, kept out
    states.update({"reconcile_2": "failed"})  # ... and its reconcile failed
    report = dag_module.summarize(PIPELINE, ["BTC-USDT", "ETH-USD", "SOL-USD"], states, {0: True, 2: False}, stages, ["refresh_serving"])
    assert report["trained"] == ["BTC-USDT", "SOL-USD"]
    assert report["promoted"] == ["BTC-USDT"]
    assert report["not_promoted"] == ["SOL-USD"]
    assert report["failed"] == {"ETH-USD": "quality", "SOL-USD": "reconcile"}
    assert report["failed_tasks"] == []
    outcomes = {k: v["outcome"] for k, v in report["symbols"].items()}
    assert outcomes == {
        "BTC-USDT": "promoted",
        "ETH-USD": "stopped at quality: failed",
        "SOL-USD": "trained, not promoted; stopped at reconcile: failed",
    }
    # The symbol list itself failed: nothing ran, and the report says so.
    empty = dag_module.summarize(EXTRACT, [], {"symbols": "failed", "extract": "upstream_failed"}, {}, ["extract", "quality"], [])
    assert empty["failed_tasks"] == ["symbols"] and empty["symbols"] == {}
    # The default branch (no symbols configured) is labelled "default".
    one = dag_module.summarize(EXTRACT, [""], {"symbols": "success", "extract_0": "success", "quality_0": "success"}, {}, ["extract", "quality"], [])
    assert one["symbols"]["default"]["outcome"] == "extracted" and not one["failed"]


def test_evaluate_not_promoted_is_an_outcome_not_a_failure(dag_module, monkeypatch):
    """Exit 9 of `rps evaluate --require-promotion`: the task succeeds with XCom promoted=false,
    and the pod (Failed phase) is deleted like a succeeded one. Exit 9 of another stage still fails."""
    dag = dag_module.build_dags(dag_module.Settings.from_env({}))[PIPELINE]
    evaluate = dag.get_task("evaluate")
    for name in ("patch_already_checked", "process_pod_deletion", "_read_pod_container_states", "_read_pod_events"):
        monkeypatch.setattr(evaluate, name, lambda *a, **k: None)
    monkeypatch.setattr(evaluate, "is_istio_enabled", lambda pod: False)
    deleted = []
    monkeypatch.setattr(type(evaluate), "pod_manager", type("PM", (), {"delete_pod": lambda self, pod: deleted.append(pod)})())
    pod = failed_pod(9)
    assert evaluate.cleanup(pod, pod) is None
    assert evaluate._not_promoted is True
    assert deleted == [pod]
    with pytest.raises(AirflowFailException, match="rps evaluate exited 8"):
        evaluate.cleanup(failed_pod(8), failed_pod(8))
    quality = dag.get_task("quality")
    for name in ("patch_already_checked", "process_pod_deletion", "_read_pod_container_states", "_read_pod_events"):
        monkeypatch.setattr(quality, name, lambda *a, **k: None)
    monkeypatch.setattr(quality, "is_istio_enabled", lambda pod: False)
    with pytest.raises(AirflowFailException, match="rps quality exited 9"):
        quality.cleanup(failed_pod(9), failed_pod(9))


# --------------------------------------------------------------------------------------------
# train.pooling: pooled (issue #20): one train and one evaluate for every symbol
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("executor", ["kubernetes", "local"])
def test_pooled_mode_trains_and_evaluates_once_after_every_transform(monkeypatch, executor):
    bag = dagbag(monkeypatch, RPS_AIRFLOW_POOLING="pooled", RPS_AIRFLOW_EXECUTOR=executor, RPS_AIRFLOW_SERVE_URL="http://rps-serve.rps.svc:8080")
    assert bag.import_errors == {}
    dag = bag.dags[PIPELINE]
    group = dag.task_group.get_task_group_dict()["per_symbol"]
    assert {t.task_id for t in group} == {"extract", "quality", "transform"}
    train, evaluate = dag.get_task("train"), dag.get_task("evaluate")
    for task in (train, evaluate):
        assert task.task_group.group_id is None, "outside the mapped group: once per run"
        assert task.trigger_rule == "all_success", "every symbol's transform must have succeeded"
    assert train.upstream_task_ids == {"transform"}
    assert evaluate.upstream_task_ids == {"train"}
    assert dag.get_task("refresh_serving").upstream_task_ids == {"evaluate"}
    assert dag.get_task("summary").upstream_task_ids == {"refresh_serving"}
    # No --symbol, and every symbol's features read by rps through {symbol}.
    assert render(train, None, **MARCH_1).arguments == ["train"]
    assert render(evaluate, None, **MARCH_1).arguments[:3] == ["evaluate", "--report-dir", "reports/pooled" if executor == "local" else "/var/lib/rps/reports/pooled"]
    # The hourly DAG is unchanged: it trains nothing.
    assert chain_of(bag.dags[EXTRACT]) == ["extract", "quality"]


def test_pooled_mode_reads_every_symbols_features_under_the_data_uri(monkeypatch):
    bag = dagbag(monkeypatch, RPS_AIRFLOW_POOLING="pooled", RPS_AIRFLOW_DATA_URI="s3://rps-data", RPS_AIRFLOW_REPORT_DIR="s3://rps-data/reports")
    dag = bag.dags[PIPELINE]
    assert render(dag.get_task("train"), None, **MARCH_1).arguments == [
        "train", "--features", "s3://rps-data/features/{symbol}", "--out", "s3://rps-data/models/pooled/candidate",
    ]  # fmt: skip
    assert render(dag.get_task("evaluate"), None, **MARCH_1).arguments == [
        "evaluate", "--features", "s3://rps-data/features/{symbol}", "--model", "s3://rps-data/models/pooled/candidate",
        "--report-dir", "s3://rps-data/reports/pooled", "--require-promotion",
    ]  # fmt: skip
    # The per-symbol stages keep their folders.
    assert render(dag.get_task("transform"), "ETH-USD", **MARCH_1).arguments[-1] == "s3://rps-data/features/ETH-USD"


def test_per_symbol_mode_is_the_default_and_pooled_refuses_what_it_cannot_do(monkeypatch):
    bag = dagbag(monkeypatch)
    assert chain_of(bag.dags[PIPELINE]) == CHAIN
    bag = dagbag(monkeypatch, RPS_AIRFLOW_POOLING="per_symbol")
    assert chain_of(bag.dags[PIPELINE]) == CHAIN
    errors = dagbag(monkeypatch, RPS_AIRFLOW_POOLING="pool").import_errors
    assert errors and "RPS_AIRFLOW_POOLING" in next(iter(errors.values())), errors


@pytest.mark.parametrize("executor", ["kubernetes", "local"])
def test_pooled_mode_reconciles_each_symbol_after_the_one_evaluate(monkeypatch, executor):
    """Reconcile stays per symbol (`rps stream reconcile --symbol SYM`: each symbol's stored bars,
    predicted with its one-hot), in a second mapped group over the same symbols, after the pooled
    evaluate and beside refresh_serving."""
    from airflow.sdk.definitions.taskgroup import MappedTaskGroup

    bag = dagbag(
        monkeypatch,
        RPS_AIRFLOW_POOLING="pooled",
        RPS_AIRFLOW_STREAM_RECONCILE="true",
        RPS_AIRFLOW_EXECUTOR=executor,
        RPS_AIRFLOW_SERVE_URL="http://rps-serve.rps.svc:8080",
    )
    assert bag.import_errors == {}
    dag = bag.dags[PIPELINE]
    groups = dag.task_group.get_task_group_dict()
    assert {t.task_id for t in groups["per_symbol"]} == {"extract", "quality", "transform"}
    after = groups["per_symbol_after"]
    assert isinstance(after, MappedTaskGroup) and {t.task_id for t in after} == {"reconcile"}
    (expand_arg,) = after._expand_input.value.values()
    assert expand_arg.operator.task_id == "symbols"
    reconcile = dag.get_task("reconcile")
    assert reconcile.upstream_task_ids == {"evaluate", "symbols"}  # symbols: the mapped XCom
    assert reconcile.trigger_rule == "all_success"  # not after a failed pooled evaluate
    assert dag.get_task("refresh_serving").upstream_task_ids == {"evaluate"}
    assert dag.get_task("summary").upstream_task_ids == {"reconcile", "refresh_serving"}
    assert dag.get_task("symbols").downstream_task_ids == {"extract", "quality", "transform", "reconcile"}
    assert render(reconcile, "ETH-USD", **MARCH_1).arguments == ["stream", "reconcile", "--symbol", "ETH-USD"]


def test_the_summary_of_a_pooled_run(dag_module):
    stages = ["extract", "quality", "transform"]
    states = {"symbols": "success", "train": "success", "evaluate": "success"}
    states.update({f"{s}_{i}": "success" for s in stages for i in (0, 1)})
    report = dag_module.summarize(PIPELINE, ["BTC-USDT", "ETH-USD"], states, {"pooled": False}, stages, ["train", "evaluate"], pooled=True)
    assert report["trained"] == ["BTC-USDT", "ETH-USD"]
    assert report["not_promoted"] == ["BTC-USDT", "ETH-USD"] and report["promoted"] == []
    assert report["symbols"]["ETH-USD"]["outcome"] == "trained, not promoted (pooled)"
    assert not report["failed"] and not report["failed_tasks"]
    # One symbol's gate failed: the pooled train does not run, and the run says so.
    states.update({"quality_1": "failed", "transform_1": "upstream_failed", "train": "upstream_failed", "evaluate": "upstream_failed"})
    report = dag_module.summarize(PIPELINE, ["BTC-USDT", "ETH-USD"], states, {}, stages, ["train", "evaluate"], pooled=True)
    assert report["trained"] == [] and report["promoted"] == []
    assert report["failed"] == {"ETH-USD": "quality"}
    assert report["failed_tasks"] == ["train", "evaluate"]


def test_the_summary_of_a_pooled_run_with_reconcile(dag_module):
    stages = ["extract", "quality", "transform", "reconcile"]
    once = ["train", "evaluate"]
    states = {"symbols": "success", "train": "success", "evaluate": "success"}
    states.update({f"{s}_{i}": "success" for s in stages for i in (0, 1)})
    states["reconcile_1"] = "failed"  # ETH-USD's stored bars could not be re-predicted
    report = dag_module.summarize(PIPELINE, ["BTC-USDT", "ETH-USD"], states, {"pooled": True}, stages, once, pooled=True, after_ids=["reconcile"])
    assert report["promoted"] == ["BTC-USDT", "ETH-USD"]
    assert report["failed"] == {"ETH-USD": "reconcile"}
    assert report["symbols"]["BTC-USDT"]["outcome"] == "promoted (pooled)"
    assert report["symbols"]["ETH-USD"]["outcome"] == "promoted (pooled); stopped at reconcile: failed"
    # The pooled train failed: no symbol's reconcile ran, and the run names the train once
    # instead of every symbol "stopping at reconcile".
    states.update({"train": "failed", "evaluate": "upstream_failed", "reconcile_0": "upstream_failed", "reconcile_1": "upstream_failed"})
    report = dag_module.summarize(PIPELINE, ["BTC-USDT", "ETH-USD"], states, {}, stages, once, pooled=True, after_ids=["reconcile"])
    assert report["failed"] == {} and report["failed_tasks"] == ["train", "evaluate"]
    assert report["trained"] == [] and report["promoted"] == []
