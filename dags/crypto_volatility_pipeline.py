"""RPS on Airflow: the crypto volatility pipeline, one branch per symbol, two executors.

Two DAGs are defined here from the same stage specifications:

``crypto_volatility_pipeline`` (retrain cadence, daily by default)
    params_symbols -> symbols -> per symbol: extract -> quality -> transform -> train -> evaluate
            [-> reconcile] -> [refresh_serving, once] -> summary
``crypto_volatility_extract`` (data cadence, hourly by default)
    params_symbols -> symbols -> per symbol: extract -> quality -> summary

``params_symbols`` runs ``rps symbols`` on the params file the stages read (a pod with the
params ConfigMap, or a local process) and hands its list over as XCom; ``symbols`` picks the run's
symbols (run conf ``symbols``, the Airflow Variable ``rps_symbols``, ``RPS_AIRFLOW_SYMBOLS``, else
params.yaml's list when it has several; none: one branch without ``--symbol``, as before #20). The per-symbol stages are a mapped task group over that list, so instance i of a stage
waits for instance i of the one before only: one symbol's failed gate stops that symbol alone.
``summary`` reports which symbols were promoted, trained but not promoted, or stopped where, and
fails the run if any stopped.

Every task runs one stage of the ``rps`` binary (``rps <stage> [flags]``). The executor is chosen by
``RPS_AIRFLOW_EXECUTOR``:

``kubernetes`` (default)
    each task is a ``KubernetesPodOperator`` running the stage image in its own pod
    (the image's entrypoint is ``rps``), with credentials from Kubernetes Secrets as env vars.
``local``
    each task runs the same ``rps <stage> [flags]`` as a local process (``RPS_BIN``), for laptops
    and tests. The task ids, dependencies, arguments, retries and timeouts are identical.

The data interval of the run is passed to extract as ``--start``/``--end`` (RFC 3339, end
exclusive), so a run is idempotent for its interval and backfills
(``airflow backfill create --dag-id ... --from-date ... --to-date ...``) fetch exactly their
windows. A manual run without a logical date extracts the last schedule interval before it was
triggered. The quality gate exits 5 when it fails: the quality task fails at once (no retry) and
transform/train/evaluate end ``upstream_failed``; nothing is trained on bad data.

Retries: exit codes that mean the input or the configuration is wrong (2 usage, 3 config, 4 bad
input, 5 quality gate, 8 model) fail the task immediately (evaluate's 9, not promoted, is an
outcome: XCom ``promoted=false``); anything else (6 remote,
7 storage, 1 internal, a killed pod, a node lost) is retried with exponential back-off.

``reconcile`` (only with ``RPS_AIRFLOW_STREAM_RECONCILE=true``) runs ``rps stream reconcile`` after
evaluate, beside refresh_serving: the predictions ``rps stream consume`` stored in PostgreSQL are
re-predicted with the live set evaluate just moved (champion, challenger, baseline), and only
missing rows and moved aliases are written. It needs the stream's database: ``DATABASE_URL`` from
the ``rps-stream`` Secret in pods, from the worker's environment in local mode. Off by default, so
installations without a stream database have no reconcile task.

All settings are environment variables of the Airflow scheduler, DAG processor and workers, read
when the DAG file is parsed; ``airflow/README.md`` lists them with their defaults. A bad value is a
DAG import error naming the variable.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import jinja2
from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
from airflow.providers.cncf.kubernetes.secret import Secret
from airflow.sdk import DAG, BaseOperator, CronDataIntervalTimetable, Param, TriggerRule, Variable, task, task_group
from airflow.sdk.exceptions import AirflowException, AirflowFailException, AirflowTimetableInvalid
from kubernetes.client import models as k8s

PIPELINE_DAG_ID = "crypto_volatility_pipeline"
EXTRACT_DAG_ID = "crypto_volatility_extract"

# Exit codes of every rps stage (see `rps <stage> --help`).
EXIT_MEANINGS = {
    1: "internal error",
    2: "bad command line",
    3: "bad configuration",
    4: "bad input data",
    5: "quality gate failed",
    6: "remote source or server failed after retries",
    7: "storage failed",
    8: "model training, evaluation or prediction failed (or no live model)",
    9: "challenger not promoted",
}
# Deterministic failures: a retry would fail the same way, so the task fails at once.
PERMANENT_EXIT_CODES = frozenset({2, 3, 4, 5, 8, 9})

DEFAULT_IMAGE = "ghcr.io/rps-mlops/rps:latest"  # docker/Dockerfile: ENTRYPOINT ["/rps"], USER 65532
POD_HOME = "/var/lib/rps"  # the data volume in stage pods (RPS_HOME)
POD_PARAMS_DIR = "/etc/rps"  # the params ConfigMap in stage pods
RUN_AS = 65532  # non-root uid/gid of the stage pods (distroless "nonroot")

# Stage resources in pods: requests are what the scheduler reserves, limits the ceiling.
DEFAULT_RESOURCES: dict[str, dict[str, dict[str, str]]] = {
    "extract": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"cpu": "1", "memory": "512Mi"}},
    "quality": {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"cpu": "1", "memory": "1Gi"}},
    "transform": {"requests": {"cpu": "250m", "memory": "512Mi"}, "limits": {"cpu": "2", "memory": "2Gi"}},
    "train": {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"cpu": "2", "memory": "4Gi"}},
    "evaluate": {"requests": {"cpu": "250m", "memory": "512Mi"}, "limits": {"cpu": "2", "memory": "2Gi"}},
    "refresh_serving": {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"cpu": "100m", "memory": "64Mi"}},
    "params_symbols": {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"cpu": "200m", "memory": "64Mi"}},
    "reconcile": {"requests": {"cpu": "250m", "memory": "256Mi"}, "limits": {"cpu": "1", "memory": "1Gi"}},
}
DEFAULT_TIMEOUT_MINUTES = {
    "extract": 30,
    "quality": 10,
    "transform": 30,
    "train": 120,
    "evaluate": 30,
    "refresh_serving": 5,
    "params_symbols": 5,
    "reconcile": 30,
}

# Kubernetes Secrets wired as env vars: group -> (default Secret name, keys = env var names).
# Override the name with RPS_AIRFLOW_<GROUP>_SECRET ('' turns the group off) and the keys with
# RPS_AIRFLOW_<GROUP>_SECRET_KEYS (comma-separated).
SECRET_GROUPS: dict[str, tuple[str, tuple[str, ...]]] = {
    "market": ("rps-market", ("COINCAP_API_KEY",)),
    "s3": ("rps-s3", ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")),
    "mlflow": ("rps-mlflow", ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")),
    "serve": ("rps-serve", ("RPS_SERVE_TOKEN",)),
    "stream": ("rps-stream", ("DATABASE_URL",)),
}


# --------------------------------------------------------------------------------------------
# Settings
# --------------------------------------------------------------------------------------------


class SettingError(ValueError):
    """A setting has a value the DAG cannot use; the message names the variable."""


def _get(env: Mapping[str, str], name: str, default: str | None = None) -> str | None:
    value = env.get(name)
    return default if value is None else value.strip()


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    value = _get(env, name)
    if value is None or value == "":
        return default
    if value.lower() in {"1", "true", "yes", "on"}:
        return True
    if value.lower() in {"0", "false", "no", "off"}:
        return False
    raise SettingError(f"{name}={value!r}: expected true or false")


def _number(env: Mapping[str, str], name: str, default: float, *, minimum: float = 0) -> float:
    value = _get(env, name)
    if value is None or value == "":
        return default
    try:
        number = float(value)
    except ValueError:
        raise SettingError(f"{name}={value!r}: expected a number") from None
    if number < minimum:
        raise SettingError(f"{name}={value!r}: must be at least {minimum:g}")
    return number


def _schedule(env: Mapping[str, str], name: str, default: str) -> str | None:
    """A cron expression or preset (@hourly, @daily, ...); 'none' or '' = manual runs only."""
    value = _get(env, name, default)
    if value is None or value.lower() in {"", "none", "null", "manual"}:
        return None
    timetable = CronDataIntervalTimetable(value, timezone="UTC")
    try:
        timetable.validate()
    except (AirflowTimetableInvalid, ValueError) as err:
        raise SettingError(f"{name}={value!r}: not a cron expression or preset ({err})") from None
    return value


def _datetime(env: Mapping[str, str], name: str, default: str) -> datetime:
    value = _get(env, name, default) or default
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise SettingError(f"{name}={value!r}: expected an RFC 3339 date-time such as {default}") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def _resources(env: Mapping[str, str]) -> dict[str, dict[str, dict[str, str]]]:
    resources = {stage: {kind: dict(v) for kind, v in spec.items()} for stage, spec in DEFAULT_RESOURCES.items()}
    raw = _get(env, "RPS_AIRFLOW_RESOURCES")
    if not raw:
        return resources
    try:
        overrides = json.loads(raw)
        for stage, spec in overrides.items():
            if stage not in resources:
                raise SettingError(f"RPS_AIRFLOW_RESOURCES: unknown stage {stage!r} (known: {', '.join(resources)})")
            for kind, values in spec.items():
                if kind not in {"requests", "limits"}:
                    raise SettingError(f"RPS_AIRFLOW_RESOURCES: {stage}.{kind}: expected requests or limits")
                resources[stage][kind].update({str(k): str(v) for k, v in values.items()})
    except (ValueError, AttributeError, TypeError) as err:
        if isinstance(err, SettingError):
            raise
        raise SettingError(
            'RPS_AIRFLOW_RESOURCES: expected JSON such as {"train": {"limits": {"memory": "8Gi"}}}'
        ) from None
    return resources


def _secrets(env: Mapping[str, str]) -> dict[str, tuple[str, tuple[str, ...]]]:
    groups = {}
    for group, (default_name, default_keys) in SECRET_GROUPS.items():
        var = f"RPS_AIRFLOW_{group.upper()}_SECRET"
        name = _get(env, var, default_name)
        if not name:
            continue
        keys_var = f"{var}_KEYS"
        keys_raw = _get(env, keys_var)
        keys = tuple(k.strip() for k in keys_raw.split(",") if k.strip()) if keys_raw else default_keys
        for key in keys:
            if not key.replace("_", "").isalnum():
                raise SettingError(f"{keys_var}: {key!r} is not an environment variable name")
        groups[group] = (name, keys)
    return groups


# A symbol becomes a path segment and a pod label value: letters, digits, '.', '_', '-'.
SYMBOL_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")


def parse_symbols(value: Any, origin: str) -> list[str]:
    """A symbol list from a JSON list, a JSON string of one, or comma-separated text.

    Order is kept, duplicates dropped; an empty list means "not configured". A name that cannot be
    a path segment or pod label is a ValueError naming `origin`.
    """
    if value is None:
        return []
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                value = json.loads(text)
            except ValueError:
                raise ValueError(f'{origin}={value!r}: expected a JSON list such as ["BTC-USDT", "ETH-USD"]') from None
        else:
            value = [part for part in text.split(",")]
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"{origin}={value!r}: expected a list of symbols")
    symbols: list[str] = []
    for item in value:
        if not isinstance(item, str):
            raise ValueError(f"{origin}: {item!r} is not a symbol name")
        name = item.strip()
        if not name:
            continue
        if not SYMBOL_PATTERN.match(name):
            raise ValueError(f"{origin}: {name!r} is not a symbol name (letters, digits, '.', '_', '-')")
        if name not in symbols:
            symbols.append(name)
    return symbols


def _symbols(env: Mapping[str, str]) -> tuple[str, ...]:
    try:
        return tuple(parse_symbols(_get(env, "RPS_AIRFLOW_SYMBOLS"), "RPS_AIRFLOW_SYMBOLS"))
    except ValueError as err:
        raise SettingError(str(err)) from None


def _repo_root() -> Path:
    return Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Settings:
    """Everything configurable, read from environment variables (see airflow/README.md)."""

    executor: str = "kubernetes"
    pipeline_schedule: str | None = "@daily"
    extract_schedule: str | None = "@hourly"
    start_date: datetime = datetime(2017, 1, 1, tzinfo=timezone.utc)
    catchup: bool = False
    retries: int = 3
    retry_delay: timedelta = timedelta(minutes=1)
    retry_backoff: float = 2.0
    max_retry_delay: timedelta = timedelta(minutes=30)
    pipeline_timeout: timedelta = timedelta(hours=6)
    extract_timeout: timedelta = timedelta(minutes=50)
    task_timeouts: dict[str, timedelta] = field(
        default_factory=lambda: {k: timedelta(minutes=v) for k, v in DEFAULT_TIMEOUT_MINUTES.items()}
    )
    pool: str | None = None
    source: str | None = None
    data_uri: str | None = None
    report_dir: str = f"{POD_HOME}/reports"
    serve_url: str | None = None
    stream_reconcile: bool = False
    # RPS_AIRFLOW_POOLING=pooled: one train and one evaluate over every symbol (params.yaml's
    # train.pooling: pooled), after every symbol's transform; per_symbol (default): per branch.
    pooled: bool = False
    symbols: tuple[str, ...] = ()  # RPS_AIRFLOW_SYMBOLS; the Variable and run conf come first
    symbols_variable: str | None = "rps_symbols"
    # kubernetes
    image: str = DEFAULT_IMAGE
    image_pull_policy: str = "IfNotPresent"
    image_pull_secrets: tuple[str, ...] = ()
    curl_image: str = "curlimages/curl:8.11.1"
    namespace: str = "rps"
    service_account: str = "rps-pipeline"
    kubernetes_conn_id: str = "kubernetes_default"
    in_cluster: bool | None = None
    data_pvc: str | None = "rps-data"
    params_configmap: str | None = "rps-params"
    env_configmap: str | None = "rps-env"
    secrets: dict[str, tuple[str, tuple[str, ...]]] = field(default_factory=lambda: dict(SECRET_GROUPS))
    resources: dict[str, dict[str, dict[str, str]]] = field(default_factory=lambda: _resources({}))
    startup_timeout: int = 300
    # local
    rps_bin: str = "rps"
    workdir: str = field(default_factory=lambda: str(_repo_root()))

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        executor = (_get(env, "RPS_AIRFLOW_EXECUTOR", "kubernetes") or "kubernetes").lower()
        if executor in {"k8s", "kubernetespodoperator"}:
            executor = "kubernetes"
        if executor not in {"kubernetes", "local"}:
            raise SettingError(f"RPS_AIRFLOW_EXECUTOR={executor!r}: expected kubernetes or local")
        local = executor == "local"
        timeouts = {}
        for stage, minutes in DEFAULT_TIMEOUT_MINUTES.items():
            timeouts[stage] = timedelta(
                minutes=_number(env, f"RPS_AIRFLOW_{stage.upper()}_TIMEOUT_MINUTES", minutes, minimum=1)
            )
        in_cluster = _get(env, "RPS_AIRFLOW_IN_CLUSTER")
        source = _get(env, "RPS_AIRFLOW_SOURCE") or None
        if source and source not in {"file", "binance", "coincap", "synthetic"}:
            raise SettingError(f"RPS_AIRFLOW_SOURCE={source!r}: expected file, binance, coincap or synthetic")
        pooling = (_get(env, "RPS_AIRFLOW_POOLING") or "per_symbol").lower()
        if pooling not in {"per_symbol", "pooled"}:
            raise SettingError(f"RPS_AIRFLOW_POOLING={pooling!r}: expected per_symbol or pooled")
        pull_policy = _get(env, "RPS_AIRFLOW_IMAGE_PULL_POLICY", "IfNotPresent")
        if pull_policy not in {"Always", "IfNotPresent", "Never"}:
            raise SettingError(f"RPS_AIRFLOW_IMAGE_PULL_POLICY={pull_policy!r}: expected Always, IfNotPresent or Never")
        return cls(
            executor=executor,
            pipeline_schedule=_schedule(env, "RPS_AIRFLOW_PIPELINE_SCHEDULE", "@daily"),
            extract_schedule=_schedule(env, "RPS_AIRFLOW_EXTRACT_SCHEDULE", "@hourly"),
            start_date=_datetime(env, "RPS_AIRFLOW_START_DATE", "2017-01-01T00:00:00Z"),
            catchup=_bool(env, "RPS_AIRFLOW_CATCHUP", False),
            retries=int(_number(env, "RPS_AIRFLOW_RETRIES", 3)),
            retry_delay=timedelta(seconds=_number(env, "RPS_AIRFLOW_RETRY_DELAY_SECONDS", 60)),
            retry_backoff=_number(env, "RPS_AIRFLOW_RETRY_BACKOFF", 2.0, minimum=1),
            max_retry_delay=timedelta(minutes=_number(env, "RPS_AIRFLOW_MAX_RETRY_DELAY_MINUTES", 30)),
            pipeline_timeout=timedelta(hours=_number(env, "RPS_AIRFLOW_PIPELINE_TIMEOUT_HOURS", 6, minimum=0.01)),
            extract_timeout=timedelta(minutes=_number(env, "RPS_AIRFLOW_EXTRACT_DAG_TIMEOUT_MINUTES", 50, minimum=1)),
            task_timeouts=timeouts,
            pool=_get(env, "RPS_AIRFLOW_POOL") or None,
            source=source,
            data_uri=(_get(env, "RPS_AIRFLOW_DATA_URI") or "").rstrip("/") or None,
            report_dir=_get(env, "RPS_AIRFLOW_REPORT_DIR") or ("reports" if local else f"{POD_HOME}/reports"),
            serve_url=(_get(env, "RPS_AIRFLOW_SERVE_URL") or "").rstrip("/") or None,
            stream_reconcile=_bool(env, "RPS_AIRFLOW_STREAM_RECONCILE", False),
            pooled=pooling == "pooled",
            symbols=_symbols(env),
            symbols_variable=_get(env, "RPS_AIRFLOW_SYMBOLS_VARIABLE", "rps_symbols") or None,
            image=_get(env, "RPS_AIRFLOW_IMAGE", DEFAULT_IMAGE) or DEFAULT_IMAGE,
            image_pull_policy=pull_policy,
            image_pull_secrets=tuple(
                s.strip() for s in (_get(env, "RPS_AIRFLOW_IMAGE_PULL_SECRETS") or "").split(",") if s.strip()
            ),
            curl_image=_get(env, "RPS_AIRFLOW_CURL_IMAGE", "curlimages/curl:8.11.1") or "curlimages/curl:8.11.1",
            namespace=_get(env, "RPS_AIRFLOW_NAMESPACE", "rps") or "rps",
            service_account=_get(env, "RPS_AIRFLOW_SERVICE_ACCOUNT", "rps-pipeline") or "rps-pipeline",
            kubernetes_conn_id=_get(env, "RPS_AIRFLOW_KUBERNETES_CONN_ID", "kubernetes_default")
            or "kubernetes_default",
            in_cluster=None if not in_cluster else _bool(env, "RPS_AIRFLOW_IN_CLUSTER", False),
            data_pvc=_get(env, "RPS_AIRFLOW_DATA_PVC", "rps-data") or None,
            params_configmap=_get(env, "RPS_AIRFLOW_PARAMS_CONFIGMAP", "rps-params") or None,
            env_configmap=_get(env, "RPS_AIRFLOW_ENV_CONFIGMAP", "rps-env") or None,
            secrets=_secrets(env),
            resources=_resources(env),
            startup_timeout=int(_number(env, "RPS_AIRFLOW_STARTUP_TIMEOUT_SECONDS", 300, minimum=1)),
            rps_bin=_get(env, "RPS_BIN", "rps") or "rps",
            workdir=_get(env, "RPS_AIRFLOW_WORKDIR") or str(_repo_root()),
        )


# --------------------------------------------------------------------------------------------
# The time window of a run
# --------------------------------------------------------------------------------------------


def rfc3339(moment: datetime) -> str:
    """UTC, second precision, 'Z' suffix: what `rps extract --start/--end` documents."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def run_window(
    start: datetime | None, end: datetime | None, run_after: datetime | None, fallback: timedelta
) -> tuple[str, str]:
    """The [start, end) window a run extracts.

    Scheduled runs, backfills and manual runs given a logical date have a data interval: that is
    the window. A manual run without a logical date has none (Airflow 3): it gets the last
    `fallback` (one schedule interval) before it was triggered, ending at the last whole hour.
    """
    if start is not None and end is not None and end > start:
        return rfc3339(start), rfc3339(end)
    anchor = (run_after or datetime.now(timezone.utc)).astimezone(timezone.utc)
    anchor = anchor.replace(minute=0, second=0, microsecond=0)
    return rfc3339(anchor - fallback), rfc3339(anchor)


def _window_macros(fallback: timedelta) -> dict[str, Any]:
    def window(ctx: jinja2.runtime.Context) -> tuple[str, str]:
        start, end = ctx.get("data_interval_start"), ctx.get("data_interval_end")
        dag_run = ctx.get("dag_run")
        run_after = getattr(dag_run, "run_after", None)
        return run_window(start, end, run_after, fallback)

    @jinja2.pass_context
    def rps_window_start(ctx: jinja2.runtime.Context) -> str:
        return window(ctx)[0]

    @jinja2.pass_context
    def rps_window_end(ctx: jinja2.runtime.Context) -> str:
        return window(ctx)[1]

    return {"rps_window_start": rps_window_start, "rps_window_end": rps_window_end}


def _interval(schedule: str | None, default: timedelta) -> timedelta:
    """Length of one interval of a cron schedule (the fallback window of manual runs)."""
    if not schedule:
        return default
    from croniter import croniter

    expression = CronDataIntervalTimetable(schedule, timezone="UTC").expression  # presets resolved
    it = croniter(expression, datetime(2025, 1, 1, tzinfo=timezone.utc))
    first = it.get_next(datetime)
    return it.get_next(datetime) - first


# --------------------------------------------------------------------------------------------
# The stages: one specification, two executors
# --------------------------------------------------------------------------------------------


# Where a path argument gets the symbol's folder: `<dir>/<symbol>` with a symbol, `<dir>` without
# (the layout rps itself uses under RPS_HOME for several symbols: data/raw/<sym>, reports/<sym>, ...).
SYMBOL_DIR = "/{symbol}"


@dataclass(frozen=True)
class Stage:
    """One task: what it runs, independent of where it runs and for which symbol."""

    task_id: str
    arguments: tuple[str, ...]  # rps: `rps` arguments, may hold templates and SYMBOL_DIR; refresh: the URL
    secret_groups: tuple[str, ...] = ("s3", "mlflow")
    program: str = "rps"  # rps: the stage image / RPS_BIN; refresh: POST to rps serve
    upstream: str | None = None  # the task it follows; None: the one before it in the list
    once: bool = False  # an rps command run once per run, not per symbol (params_symbols)

    @property
    def stage(self) -> str | None:
        """The rps stage this task runs (None for the refresh request): `train`, `stream reconcile`."""
        if self.program != "rps":
            return None
        return " ".join(self.arguments[:2]) if self.arguments[0] == "stream" else self.arguments[0]

    @property
    def per_symbol(self) -> bool:
        """rps stages run once per symbol (a mapped task); the refresh request once per run."""
        return self.program == "rps" and not self.once


def bind_symbol(arguments: Sequence[str], stage: str | None, symbol: str | None) -> list[str]:
    """`rps <stage> [flags]` for one symbol: `--symbol SYM` right after the stage's words and
    SYMBOL_DIR in path flags made `/SYM`. Without a symbol ('' or None: params.yaml's single
    symbol) the arguments are today's: no flag, no extra folder."""
    if symbol is None:
        # A task run once per run (params_symbols, a pooled train or evaluate): its arguments
        # are its own; a pooled stage's `{symbol}` is for rps to fill in per symbol.
        return list(arguments)
    segment = f"/{symbol}" if symbol else ""
    bound = [a.replace(SYMBOL_DIR, segment) if isinstance(a, str) else a for a in arguments]
    if symbol and stage is not None:
        words = len(stage.split())
        bound[words:words] = ["--symbol", symbol]
    return bound


def stage_specs(settings: Settings, dag_id: str) -> list[Stage]:
    """The task chain of a DAG, in order: per-symbol stages first, then the once-per-run tasks."""
    data = settings.data_uri
    raw = [f"{data}/raw{SYMBOL_DIR}"] if data else []
    features = [f"{data}/features{SYMBOL_DIR}"] if data else []
    model = [f"{data}/models{SYMBOL_DIR}/candidate"] if data else []
    report_dir = f"{settings.report_dir}{SYMBOL_DIR}"
    extract = ["extract", "--start", "{{ rps_window_start() }}", "--end", "{{ rps_window_end() }}"]
    if settings.source:
        extract += ["--source", settings.source]
    if data:
        extract += ["--out", *raw]
    quality = ["quality", *(["--input", *raw] if data else []), "--report-dir", report_dir]
    stages = [
        Stage("extract", tuple(extract), ("market", "s3", "mlflow")),
        Stage("quality", tuple(quality)),
    ]
    if dag_id == EXTRACT_DAG_ID:
        return stages
    transform = ["transform", *(["--input", *raw, "--out", *features] if data else [])]
    if settings.pooled:
        # One model over every symbol: rps reads each symbol's features through {symbol} (not a
        # Jinja template) and keeps the one candidate and report under .../pooled.
        features = [f"{data}/features/{{symbol}}"] if data else []
        model = [f"{data}/models/pooled/candidate"] if data else []
        report_dir = f"{settings.report_dir}/pooled"
    train = ["train", *(["--features", *features, "--out", *model] if data else [])]
    # --require-promotion: "not promoted" becomes exit 9, the one way a pod can tell the DAG; the
    # operators turn it into a successful task with XCom promoted=false (see RpsPodOperator).
    evaluate = [
        "evaluate",
        *(["--features", *features, "--model", *model] if data else []),
        "--report-dir",
        report_dir,
        "--require-promotion",
    ]
    stages += [
        Stage("transform", tuple(transform)),
        # Pooled: once per run, after every symbol's transform (all must succeed: the model reads
        # them all), then one evaluate deciding for every symbol.
        Stage("train", tuple(train), once=settings.pooled, upstream="transform" if settings.pooled else None),
        Stage("evaluate", tuple(evaluate), once=settings.pooled, upstream="train" if settings.pooled else None),
    ]
    if settings.stream_reconcile:
        # Beside refresh_serving, not after it: a stream database that is down must not keep the
        # new champion from being served, and a failed refresh must not leave the stored
        # predictions behind. Runs after every evaluate, promotion or not: evaluate may also have
        # moved the challenger alias. Nothing changed = nothing written. Per symbol, like the
        # stages (`rps stream reconcile --symbol SYM`); pooled: a second mapped group over the
        # symbols after the one evaluate, each symbol's stored bars re-predicted with its one-hot.
        stages.append(
            Stage(
                "reconcile",
                ("stream", "reconcile"),
                ("s3", "mlflow", "stream"),
                upstream="evaluate",
            )
        )
    if settings.serve_url:
        # Once per run, after every symbol's evaluate: rps serve reloads all its models at once.
        stages.append(
            Stage(
                "refresh_serving",
                (f"{settings.serve_url}/refresh",),
                ("serve",),
                program="refresh",
                upstream="evaluate",
            )
        )
    return stages


# Where a pod writes its result for Airflow to read as XCom (KubernetesPodOperator's sidecar).
XCOM_RETURN = "/airflow/xcom/return.json"
PARAMS_SYMBOLS_TASK = "params_symbols"
# `rps symbols` on the params file the stages read: the symbols of params.yaml, as XCom.
PARAMS_SYMBOLS = Stage(PARAMS_SYMBOLS_TASK, ("symbols", "--output", XCOM_RETURN), (), once=True)


def stage_failure(stage: str, exit_code: int | None, detail: str = "", *, rps: bool = True) -> AirflowException:
    """The exception for a stage that exited non-zero: permanent rps exit codes are not retried."""
    if not rps:
        return AirflowException(f"{stage} exited {exit_code}; will be retried if retries remain. {detail}".strip())
    meaning = EXIT_MEANINGS.get(exit_code or 0, "terminated abnormally")
    message = f"rps {stage} exited {exit_code} ({meaning})"
    if exit_code in PERMANENT_EXIT_CODES:
        return AirflowFailException(f"{message}; not retried: the same input would fail the same way. {detail}".strip())
    return AirflowException(f"{message}; will be retried if retries remain. {detail}".strip())


def base_container_exit_code(pod: k8s.V1Pod | None, container: str) -> int | None:
    statuses = (pod.status.container_statuses if pod is not None and pod.status else None) or []
    for status in statuses:
        if status.name == container and status.state and status.state.terminated:
            return status.state.terminated.exit_code
    return None


# The label of a mapped task instance in the UI and logs: its symbol.
SYMBOL_MAP_INDEX_TEMPLATE = "{{ (task.symbol or 'default') if task.symbol is string else '' }}"
NOT_PROMOTED = 9  # rps evaluate --require-promotion: the challenger was not promoted


class SymbolBound:
    """What both operators share: the symbol of their mapped task instance, bound into the
    arguments once the template fields (the symbol among them) are rendered, and evaluate's
    "not promoted" (exit 9) recorded as XCom `promoted` instead of a failure."""

    symbol: Any
    arguments: Any
    rps_stage: str | None
    _bound: bool = False

    def _do_render_template_fields(self, parent, template_fields, context, jinja_env, seen_oids) -> None:
        # Hooked here, not in render_template_fields: both rendering paths end here.
        super()._do_render_template_fields(parent, template_fields, context, jinja_env, seen_oids)  # type: ignore[misc]
        if parent is self:
            self.bind_symbol()

    def bind_symbol(self) -> None:
        if self._bound or not (self.symbol is None or isinstance(self.symbol, str)):
            return  # already bound, or the mapped argument is not resolved yet
        self.arguments = bind_symbol(self.arguments, self.rps_stage, self.symbol)
        self._bound = True

    def promotion_outcome(self, context: Any, not_promoted: bool) -> None:
        if self.rps_stage == "evaluate":
            context["ti"].xcom_push(key="promoted", value=not not_promoted)


class RpsPodOperator(SymbolBound, KubernetesPodOperator):
    """A KubernetesPodOperator that fails a stage at once when its exit code says retrying is pointless."""

    template_fields: Sequence[str] = ("symbol", *KubernetesPodOperator.template_fields)
    # Arguments such as a params.yaml path must not be read as Jinja template files.
    template_ext: Sequence[str] = ()

    def __init__(self, *, rps_stage: str | None, symbol: Any = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.rps_stage = rps_stage
        self.symbol = symbol
        self._not_promoted = False

    def bind_symbol(self) -> None:
        bound = self._bound
        super().bind_symbol()
        if self._bound and not bound and self.symbol:
            self.labels = {**(self.labels or {}), "rps/symbol": self.symbol}

    def execute(self, context: Any) -> Any:
        self._not_promoted = False
        result = super().execute(context)
        self.promotion_outcome(context, self._not_promoted)
        return result

    def cleanup(self, pod, remote_pod, xcom_result=None, context=None):  # type: ignore[override]
        try:
            return super().cleanup(pod, remote_pod, xcom_result=xcom_result, context=context)
        except AirflowFailException:
            raise
        except AirflowException as err:
            if type(err).__name__ == "AirflowSkipException":
                raise
            code = base_container_exit_code(remote_pod, self.base_container_name)
            if code is None:
                raise
            if code == NOT_PROMOTED and self.rps_stage == "evaluate":
                # The champion stays; that is an outcome, not a failure. The pod ended "Failed"
                # (exit 9), so it was kept: delete it like a succeeded one.
                self.log.info("rps evaluate: challenger not promoted (exit 9); the champion is kept")
                self._not_promoted = True
                try:
                    self.pod_manager.delete_pod(remote_pod)
                except Exception as delete_err:  # noqa: BLE001 (a pod left behind is not a stage failure)
                    self.log.warning("could not delete pod %s: %s", pod.metadata.name if pod else "?", delete_err)
                return None
            detail = f"Pod {pod.metadata.name if pod else '?'}."
            raise stage_failure(self.rps_stage or self.task_id, code, detail, rps=self.rps_stage is not None) from err


class RpsLocalOperator(SymbolBound, BaseOperator):
    """Runs `PROGRAM ARGUMENTS...` as a local process: the local twin of RpsPodOperator."""

    template_fields: Sequence[str] = ("symbol", "arguments", "env_vars")
    ui_color = "#e8f4ea"

    def __init__(
        self,
        *,
        rps_stage: str | None,
        program: str,
        arguments: Sequence[str],
        env_vars: dict[str, str] | None = None,
        cwd: str | None = None,
        symbol: Any = None,
        xcom_file: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.rps_stage = rps_stage
        self.program = program
        self.arguments = list(arguments)
        self.env_vars = dict(env_vars or {})
        self.cwd = cwd
        self.symbol = symbol
        # The pod's XCom file (XCOM_RETURN) in the arguments: here a temporary file whose JSON
        # the task returns, as the pod operator's sidecar reads it.
        self.xcom_file = xcom_file
        self._process: subprocess.Popen[str] | None = None

    def execute(self, context: Any) -> Any:
        if self.xcom_file is None:
            return self._run(context)
        with tempfile.TemporaryDirectory(prefix="rps-xcom-") as tmp:
            result = os.path.join(tmp, "return.json")
            self.arguments = [result if a == self.xcom_file else a for a in self.arguments]
            self._run(context)
            try:
                with open(result, encoding="utf-8") as f:
                    return json.load(f)
            except (OSError, ValueError) as err:
                raise AirflowFailException(f"{self.task_id}: no JSON result in {result}: {err}") from None

    def _run(self, context: Any) -> None:
        program = shutil.which(self.program)
        if program is None:
            raise AirflowFailException(
                f"{self.program!r} not found: set RPS_BIN to the rps binary (local mode), or put it on PATH"
            )
        argv = [program, *self.arguments]
        env = {**os.environ, "NO_COLOR": "1", **self.env_vars}  # plain log lines in the task log
        self.log.info("running %s (cwd %s)", shlex.join(argv), self.cwd or os.getcwd())
        self._process = subprocess.Popen(
            argv,
            cwd=self.cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            start_new_session=True,
        )
        try:
            assert self._process.stdout is not None
            for line in self._process.stdout:
                self.log.info("%s", line.rstrip())
            code = self._process.wait()
        finally:
            self._terminate()
        if code == NOT_PROMOTED and self.rps_stage == "evaluate":
            self.log.info("rps evaluate: challenger not promoted (exit 9); the champion is kept")
        elif code != 0:
            raise stage_failure(self.rps_stage or self.task_id, code, rps=self.rps_stage is not None)
        self.promotion_outcome(context, code == NOT_PROMOTED)

    def _terminate(self) -> None:
        process = self._process
        if process is None or process.poll() is not None:
            return
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=10)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def on_kill(self) -> None:
        self._terminate()


# One DAG run = one pipeline invocation: with MLflow, its stage runs nest under one parent run.
PIPELINE_RUN_ENV = {"RPS_PIPELINE_RUN": "{{ run_id }}"}


def _pod_env(settings: Settings) -> dict[str, str]:
    env = {"RPS_HOME": POD_HOME, "RPS_LOG_FORMAT": "json", **PIPELINE_RUN_ENV}
    if settings.params_configmap:
        env["RPS_PARAMS"] = f"{POD_PARAMS_DIR}/params.yaml"
    return env


def _pod_volumes(settings: Settings) -> tuple[list[k8s.V1Volume], list[k8s.V1VolumeMount]]:
    volumes = [k8s.V1Volume(name="tmp", empty_dir=k8s.V1EmptyDirVolumeSource())]
    mounts = [k8s.V1VolumeMount(name="tmp", mount_path="/tmp")]
    if settings.data_pvc:
        volumes.append(
            k8s.V1Volume(
                name="rps-data",
                persistent_volume_claim=k8s.V1PersistentVolumeClaimVolumeSource(claim_name=settings.data_pvc),
            )
        )
    else:  # data and registry must then live in S3/MLflow (RPS_AIRFLOW_DATA_URI, MLflow settings)
        volumes.append(k8s.V1Volume(name="rps-data", empty_dir=k8s.V1EmptyDirVolumeSource()))
    mounts.append(k8s.V1VolumeMount(name="rps-data", mount_path=POD_HOME))
    if settings.params_configmap:
        volumes.append(
            k8s.V1Volume(name="rps-params", config_map=k8s.V1ConfigMapVolumeSource(name=settings.params_configmap))
        )
        mounts.append(k8s.V1VolumeMount(name="rps-params", mount_path=POD_PARAMS_DIR, read_only=True))
    return volumes, mounts


def _secrets_for(settings: Settings, stage: Stage) -> list[Secret]:
    secrets = []
    for group in stage.secret_groups:
        if group not in settings.secrets:
            continue
        name, keys = settings.secrets[group]
        secrets += [Secret(deploy_type="env", deploy_target=key, secret=name, key=key) for key in keys]
    return secrets


def _mapping_kwargs(stage: Stage, symbol: Any) -> dict[str, Any]:
    if not stage.per_symbol:
        return {}
    return {"symbol": symbol, "map_index_template": SYMBOL_MAP_INDEX_TEMPLATE}


def _pod_task(settings: Settings, stage: Stage, timeout: timedelta, symbol: Any = None) -> RpsPodOperator:
    volumes, mounts = _pod_volumes(settings)
    resources = settings.resources[stage.task_id]
    if stage.program == "rps":
        image, cmds, arguments = settings.image, None, list(stage.arguments)  # entrypoint: rps
        env = _pod_env(settings)
    else:
        image, cmds = settings.curl_image, ["curl"]
        # Kubernetes expands $(VAR) in args from the container's env: the token never enters the spec.
        arguments = [
            "--fail-with-body", "-sS", "--retry", "3", "-X", "POST",
            "-H", "Authorization: Bearer $(RPS_SERVE_TOKEN)", stage.arguments[0],
        ]  # fmt: skip
        env, volumes, mounts = {}, [], []
    return RpsPodOperator(
        task_id=stage.task_id,
        rps_stage=stage.stage,
        name=f"rps-{stage.task_id.replace('_', '-')}",
        namespace=settings.namespace,
        image=image,
        image_pull_policy=settings.image_pull_policy,
        image_pull_secrets=[k8s.V1LocalObjectReference(name=s) for s in settings.image_pull_secrets] or None,
        cmds=cmds,
        arguments=arguments,
        env_vars=env,
        configmaps=[settings.env_configmap] if settings.env_configmap and stage.program == "rps" else None,
        secrets=_secrets_for(settings, stage),
        service_account_name=settings.service_account,
        automount_service_account_token=False,
        kubernetes_conn_id=settings.kubernetes_conn_id,
        in_cluster=settings.in_cluster,
        labels={
            "app.kubernetes.io/name": "rps",
            "app.kubernetes.io/component": stage.task_id.replace("_", "-"),
            "app.kubernetes.io/part-of": "rps-pipeline",
        },
        container_resources=k8s.V1ResourceRequirements(requests=resources["requests"], limits=resources["limits"]),
        volumes=volumes,
        volume_mounts=mounts,
        security_context=k8s.V1PodSecurityContext(
            run_as_non_root=True,
            run_as_user=RUN_AS,
            run_as_group=RUN_AS,
            fs_group=RUN_AS,
            seccomp_profile=k8s.V1SeccompProfile(type="RuntimeDefault"),
        ),
        container_security_context=k8s.V1SecurityContext(
            allow_privilege_escalation=False,
            read_only_root_filesystem=True,
            capabilities=k8s.V1Capabilities(drop=["ALL"]),
        ),
        # A pod never outlives its task: the deadline is the task timeout plus a grace minute.
        active_deadline_seconds=int(timeout.total_seconds()) + 60,
        startup_timeout_seconds=settings.startup_timeout,
        on_finish_action="delete_succeeded_pod",
        get_logs=True,
        log_events_on_failure=True,
        # params_symbols hands `rps symbols --output /airflow/xcom/return.json` over as XCom.
        do_xcom_push=XCOM_RETURN in stage.arguments,
        execution_timeout=timeout,
        **_mapping_kwargs(stage, symbol),
    )


# The local twin of the curl pod: POST <serve>/refresh with the bearer token from RPS_SERVE_TOKEN.
REFRESH_SCRIPT = """
import os, sys, urllib.request
url, token = sys.argv[1], os.environ.get("RPS_SERVE_TOKEN", "")
if not token:
    sys.exit("RPS_SERVE_TOKEN is not set: rps serve answers 403 to /refresh without it")
request = urllib.request.Request(url, method="POST", headers={"Authorization": "Bearer " + token})
with urllib.request.urlopen(request, timeout=60) as response:
    print(response.status, response.read().decode(errors="replace"))
"""


def _local_task(settings: Settings, stage: Stage, timeout: timedelta, symbol: Any = None) -> RpsLocalOperator:
    if stage.program == "rps":
        program, arguments = settings.rps_bin, list(stage.arguments)
    else:  # refresh: the same request as the curl pod, from a Python one-liner (no curl needed)
        program, arguments = sys.executable, ["-c", REFRESH_SCRIPT, stage.arguments[0]]
    return RpsLocalOperator(
        task_id=stage.task_id,
        rps_stage=stage.stage,
        program=program,
        arguments=arguments,
        env_vars=dict(PIPELINE_RUN_ENV),
        cwd=settings.workdir,
        execution_timeout=timeout,
        xcom_file=XCOM_RETURN if XCOM_RETURN in stage.arguments else None,
        **_mapping_kwargs(stage, symbol),
    )


# --------------------------------------------------------------------------------------------
# The symbols of a run, and what became of each
# --------------------------------------------------------------------------------------------

DEFAULT_SYMBOL = ""  # one branch without --symbol: params.yaml's single symbol, as before #20
SYMBOLS_TASK = "symbols"
POOLED = "pooled"  # the summary's key of the one pooled evaluate
SUMMARY_TASK = "summary"
GROUP_ID = "per_symbol"
AFTER_GROUP_ID = "per_symbol_after"  # pooled: the per-symbol stages after the one evaluate


def choose_symbols(
    *,
    conf_symbols: Any = None,
    variable: Any = None,
    variable_name: str | None = "rps_symbols",
    setting: Sequence[str] = (),
    listed: Sequence[str] | None = None,
    alert_symbol: Any = None,
) -> tuple[list[str], str]:
    """The symbols of one run and where they came from; the first source that names any wins:

    1. the run's conf `symbols` (a manual trigger: `airflow dags trigger --conf '{"symbols": [...]}'`),
    2. the Airflow Variable (`rps_symbols`, a JSON list or comma-separated),
    3. `RPS_AIRFLOW_SYMBOLS` (parse-time setting),
    4. params.yaml's own list (`rps symbols`, the params_symbols task), when it has more than one.

    None of them: one branch without `--symbol` (params.yaml's single symbol, the behaviour before
    #20). An alert's conf `symbol` (rps alert-hook) then narrows a list to that one symbol; naming
    a symbol outside the list is an error. Raises ValueError naming the source of a bad value.
    """
    sources = [
        ("dag_run.conf.symbols", conf_symbols),
        (f"Variable {variable_name}", variable),
        ("RPS_AIRFLOW_SYMBOLS", list(setting)),
        ("rps symbols", list(listed) if listed and len(listed) > 1 else None),
    ]
    for origin, value in sources:
        symbols = parse_symbols(value, origin)
        if symbols:
            break
    else:
        return [DEFAULT_SYMBOL], "none configured: params.yaml's single symbol, no --symbol"
    if alert_symbol:
        (wanted,) = parse_symbols([alert_symbol], "dag_run.conf.symbol")
        if wanted not in symbols:
            raise ValueError(f"dag_run.conf.symbol={wanted!r} is not one of the symbols {symbols} ({origin})")
        return [wanted], f"{origin}, narrowed to dag_run.conf.symbol"
    return symbols, origin


def _symbols_task(settings: Settings) -> Any:
    @task(task_id=SYMBOLS_TASK, execution_timeout=timedelta(minutes=5))
    def symbols(**context: Any) -> list[str]:
        """The symbols this run maps over (see choose_symbols for the precedence)."""
        import logging

        log = logging.getLogger("airflow.task")
        dag_run = context.get("dag_run")
        conf = dict(getattr(dag_run, "conf", None) or {})
        params = context.get("params") or {}
        variable = None
        if settings.symbols_variable:
            variable = Variable.get(settings.symbols_variable, default=None)
        arguments = {
            "conf_symbols": params.get("symbols") or conf.get("symbols"),
            "variable": variable,
            "variable_name": settings.symbols_variable,
            "setting": settings.symbols,
            "alert_symbol": conf.get("symbol"),
        }
        listed = context["ti"].xcom_pull(task_ids=PARAMS_SYMBOLS_TASK)
        if listed is not None and not (isinstance(listed, list) and all(isinstance(s, str) for s in listed)):
            raise AirflowFailException(f"{PARAMS_SYMBOLS_TASK} returned {listed!r}, not a list of symbols")
        try:
            chosen, origin = choose_symbols(**arguments, listed=listed)
        except ValueError as err:
            raise AirflowFailException(str(err)) from None
        log.info("symbols of this run: %s (from %s)", chosen, origin)
        return chosen

    return symbols


def summarize(
    dag_id: str,
    symbols: Sequence[str],
    states: Mapping[str, Any],
    promoted: Mapping[Any, Any],
    stage_ids: Sequence[str],
    once_ids: Sequence[str],
    *,
    pooled: bool = False,
    after_ids: Sequence[str] = (),
) -> dict[str, Any]:
    """What became of each symbol, from the task states of one run.

    `states` is Airflow's task-state map of the run (`extract_0` for map index 0 of extract,
    `symbols` for an unmapped task); `promoted` evaluate's XCom per map index, or with `pooled`
    (one train and one evaluate for every symbol) under the key POOLED. `after_ids`: the stages
    of `stage_ids` that run per symbol after the pooled evaluate (reconcile); when the pooled
    train or evaluate did not succeed they never ran for any symbol, which `failed_tasks` says
    once instead of every symbol stopping there.
    """
    pipeline = dag_id == PIPELINE_DAG_ID
    report: dict[str, Any] = {
        "symbols": {},
        "trained": [],
        "promoted": [],
        "not_promoted": [],
        "failed": {},
        "tasks": {t: states.get(t) for t in (PARAMS_SYMBOLS_TASK, SYMBOLS_TASK, *once_ids)},
    }
    skipped = set(after_ids) if pooled and states.get("evaluate") != "success" else set()
    for index, symbol in enumerate(symbols):
        label = symbol or "default"
        branch = {stage: states.get(f"{stage}_{index}") for stage in stage_ids if stage not in skipped}
        stopped = next(((s, st) for s, st in branch.items() if st != "success"), None)
        entry: dict[str, Any] = {"states": branch}
        if pipeline and branch.get("train") == "success":
            report["trained"].append(label)
        if pipeline and branch.get("evaluate") == "success":
            is_promoted = promoted.get(index)
            entry["promoted"] = is_promoted
            report["promoted" if is_promoted else "not_promoted"].append(label)
            entry["outcome"] = "promoted" if is_promoted else "trained, not promoted"
        elif not pipeline and stopped is None:
            entry["outcome"] = "extracted"
        if stopped is not None:
            stage, state = stopped
            failed_at = next((s for s, st in branch.items() if st == "failed"), stage)
            report["failed"][label] = failed_at
            note = f"stopped at {stage}: {state or 'not run'}"
            if failed_at != stage:
                note += f" ({failed_at} failed)"
            entry["outcome"] = f"{entry['outcome']}; {note}" if "outcome" in entry else note
        report["symbols"][label] = entry
    if pipeline and pooled:
        # The one pooled model: trained and promoted (or not) for every symbol at once.
        report["pooled"] = {"train": states.get("train"), "evaluate": states.get("evaluate")}
        if states.get("train") == "success":
            report["trained"] = [label for label in report["symbols"]]
        if states.get("evaluate") == "success":
            is_promoted = promoted.get(POOLED)
            key = "promoted" if is_promoted else "not_promoted"
            report[key] = list(report["symbols"])
            for label, entry in report["symbols"].items():
                entry["promoted"] = is_promoted
                outcome = "promoted (pooled)" if is_promoted else "trained, not promoted (pooled)"
                if label in report["failed"]:  # a stage after the pooled evaluate (reconcile)
                    stage = report["failed"][label]
                    outcome += f"; stopped at {stage}: {entry['states'].get(stage) or 'not run'}"
                entry["outcome"] = outcome
    report["failed_tasks"] = [
        task_id for task_id, state in report["tasks"].items() if state in {"failed", "upstream_failed"}
    ]
    if not symbols and SYMBOLS_TASK not in report["failed_tasks"]:
        report["failed_tasks"].insert(0, SYMBOLS_TASK)
    return report


def _summary_task(
    dag_id: str, stage_ids: Sequence[str], once_ids: Sequence[str], pooled: bool = False, after_ids: Sequence[str] = ()
) -> Any:
    @task(task_id=SUMMARY_TASK, trigger_rule=TriggerRule.ALL_DONE, retries=0, execution_timeout=timedelta(minutes=5))
    def summary(**context: Any) -> dict[str, Any]:
        """Which symbols were trained, promoted, or stopped where; fails the run if any stopped."""
        import logging

        log = logging.getLogger("airflow.task")
        ti = context["ti"]
        symbols = ti.xcom_pull(task_ids=SYMBOLS_TASK) or []
        states = ti.get_task_states(dag_id=ti.dag_id, run_ids=[ti.run_id]).get(ti.run_id, {})
        promoted: dict[Any, Any] = {}
        if dag_id == PIPELINE_DAG_ID and pooled:
            if states.get("evaluate") == "success":
                promoted[POOLED] = ti.xcom_pull(task_ids="evaluate", key="promoted")
        elif dag_id == PIPELINE_DAG_ID:
            for index in range(len(symbols)):
                if states.get(f"evaluate_{index}") == "success":
                    promoted[index] = ti.xcom_pull(task_ids="evaluate", key="promoted", map_indexes=index)
        report = summarize(dag_id, symbols, states, promoted, stage_ids, once_ids, pooled=pooled, after_ids=after_ids)
        width = max((len(s) for s in report["symbols"]), default=7)
        for label, entry in report["symbols"].items():
            log.info("%-*s  %s", width, label, entry["outcome"])
        for task_id, state in report["tasks"].items():
            log.info("%-*s  %s", width, task_id, state or "not run")
        if dag_id == PIPELINE_DAG_ID:
            log.info(
                "trained: %s; promoted: %s; not promoted: %s",
                report["trained"] or "none",
                report["promoted"] or "none",
                report["not_promoted"] or "none",
            )
        if report["failed"] or report["failed_tasks"]:
            # The report stays readable (XCom) although the task fails: the run must show red.
            ti.xcom_push(key="return_value", value=report)
            problems = [f"{label} stopped at {stage}" for label, stage in report["failed"].items()]
            problems += [f"{task_id} failed" for task_id in report["failed_tasks"]]
            raise AirflowFailException("this run failed: " + "; ".join(problems))
        return report

    return summary


DOC_MD = """
### RPS: crypto volatility, one branch per symbol

`params_symbols` runs `rps symbols` on the params file the stages read and passes its list on;
`symbols` picks the run's symbols (run conf `symbols`, the Airflow Variable `rps_symbols`,
`RPS_AIRFLOW_SYMBOLS`, else params.yaml's list when it has several; none: params.yaml's single
symbol). The per-symbol group is mapped over them: each task instance runs one stage of the `rps` binary,
`rps <stage> --symbol SYM [flags]`, in its own pod from the stage image
(`RPS_AIRFLOW_EXECUTOR=kubernetes`, the default) or as a local process (`local`).

* **extract** fetches the run's data interval (`--start`/`--end`, end exclusive) and merges it into
  the raw dataset: reruns and backfills of an interval are idempotent.
* **quality** is the gate: exit 5 stops this symbol's branch here, before anything is trained;
  the other symbols go on.
* **transform -> train -> evaluate** build features, train a candidate and promote it to champion
  only if it beats the current one (XCom `promoted`); **reconcile** (when
  `RPS_AIRFLOW_STREAM_RECONCILE=true`) makes the stream's stored predictions follow.
* **refresh_serving** (when `RPS_AIRFLOW_SERVE_URL` is set) runs once, after every symbol's evaluate,
  if at least one evaluate succeeded: `rps serve` loads the champions.
* **summary** reports per symbol: promoted, trained but not promoted, or stopped at which stage;
  it fails (and with it the run) when any symbol stopped.

Exit codes 2, 3, 4, 5, 8 (usage, config, bad input, quality gate, model) fail a task at once;
others (remote or storage failures, killed pods) are retried with exponential back-off.
Settings: `airflow/README.md`.
"""


def build_dag(settings: Settings, dag_id: str) -> DAG:
    """One DAG: params_symbols -> symbols -> one mapped branch per symbol -> [refresh_serving] ->
    summary, the same whichever executor runs it."""
    is_pipeline = dag_id == PIPELINE_DAG_ID
    schedule = settings.pipeline_schedule if is_pipeline else settings.extract_schedule
    fallback = _interval(schedule, timedelta(days=1) if is_pipeline else timedelta(hours=1))
    default_args: dict[str, Any] = {
        "owner": "rps",
        "depends_on_past": False,
        "retries": settings.retries,
        "retry_delay": settings.retry_delay,
        "retry_exponential_backoff": settings.retry_backoff,
        "max_retry_delay": settings.max_retry_delay,
    }
    if settings.pool:
        default_args["pool"] = settings.pool
    dag = DAG(
        dag_id=dag_id,
        description=(
            "Crypto volatility per symbol: extract -> quality -> transform -> train -> evaluate"
            if is_pipeline
            else "Crypto candles per symbol: incremental extract of the interval -> quality gate"
        ),
        schedule=CronDataIntervalTimetable(schedule, timezone="UTC") if schedule else None,
        start_date=settings.start_date,
        catchup=settings.catchup,
        max_active_runs=1,
        dagrun_timeout=settings.pipeline_timeout if is_pipeline else settings.extract_timeout,
        default_args=default_args,
        user_defined_macros=_window_macros(fallback),
        params={
            "symbols": Param(
                None,
                type=["null", "array"],
                items={"type": "string"},
                description="Symbols of this run (default: the Variable, RPS_AIRFLOW_SYMBOLS, params.yaml)",
            )
        },
        tags=["rps", "volatility", settings.executor],
        doc_md=DOC_MD,
    )
    make = _pod_task if settings.executor == "kubernetes" else _local_task
    specs = stage_specs(settings, dag_id)
    once = [s for s in specs if not s.per_symbol]
    once_ids = {s.task_id for s in once}
    # Per symbol after a once-per-run task (pooled: reconcile after the one evaluate): a second
    # mapped group over the same symbols, since a mapped group cannot wait for a task after it.
    after = [s for s in specs if s.per_symbol and s.upstream in once_ids]
    per_symbol = [s for s in specs if s.per_symbol and s not in after]
    tasks: dict[str, Any] = {}

    # A mapped task GROUP, not mapped tasks: instance i of quality waits for instance i of extract
    # only, so one symbol's failed gate stops that symbol's branch and no other.
    @task_group(group_id=GROUP_ID, prefix_group_id=False)
    def branch(symbol: Any) -> None:
        previous = None
        for stage in per_symbol:
            current = make(settings, stage, settings.task_timeouts[stage.task_id], symbol)
            after = tasks[stage.upstream] if stage.upstream else previous
            if after is not None:
                after >> current
            tasks[stage.task_id] = previous = current

    @task_group(group_id=AFTER_GROUP_ID, prefix_group_id=False)
    def after_branch(symbol: Any) -> None:
        previous = None
        for stage in after:
            current = make(settings, stage, settings.task_timeouts[stage.task_id], symbol)
            (previous if previous is not None else tasks[stage.upstream]) >> current
            tasks[stage.task_id] = previous = current

    with dag:
        listed = make(settings, PARAMS_SYMBOLS, settings.task_timeouts[PARAMS_SYMBOLS_TASK])
        chosen = _symbols_task(settings)()
        listed >> chosen
        branch.expand(symbol=chosen)
        for stage in once:
            current = make(settings, stage, settings.task_timeouts[stage.task_id])
            if stage.program == "rps":
                # A pooled train or evaluate: every symbol's transform (or the train) must have
                # succeeded, since the one model reads every symbol.
                current.trigger_rule = TriggerRule.ALL_SUCCESS
            else:
                # After every symbol's evaluate; runs if at least one of them succeeded.
                current.trigger_rule = TriggerRule.ALL_DONE_MIN_ONE_SUCCESS
            tasks[stage.upstream or per_symbol[-1].task_id] >> current
            tasks[stage.task_id] = current
        if after:
            after_branch.expand(symbol=chosen)
        leaves = [t for t in dag.tasks if not t.downstream_task_ids]
        summary = _summary_task(
            dag_id,
            [s.task_id for s in (*per_symbol, *after)],
            [s.task_id for s in once],
            settings.pooled,
            [s.task_id for s in after],
        )()
        leaves >> summary
    return dag


def build_dags(settings: Settings) -> dict[str, DAG]:
    return {dag_id: build_dag(settings, dag_id) for dag_id in (PIPELINE_DAG_ID, EXTRACT_DAG_ID)}


SETTINGS = Settings.from_env()
_DAGS = build_dags(SETTINGS)
crypto_volatility_pipeline = _DAGS[PIPELINE_DAG_ID]
crypto_volatility_extract = _DAGS[EXTRACT_DAG_ID]
