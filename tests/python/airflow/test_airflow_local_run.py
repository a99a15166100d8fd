"""`airflow dags test` of the real DAG in local mode, on the bundled sample and on corrupted data.

Each run is a real Airflow DAG run (sqlite metadata DB in a temporary AIRFLOW_HOME) whose tasks
run the rps binary from RPS_BIN_DIR as local processes. Task states are read back from the
metadata DB; artifacts from the temporary RPS_HOME.

1. crypto_volatility_extract for one monthly interval: only that month is extracted.
2. crypto_volatility_pipeline for the 2021 interval, with a real `rps serve` waiting for a model:
   every task succeeds, the model and reports exist, and refresh_serving made serve load the
   champion.
3. The same pipeline on a CSV with broken OHLC rows: quality fails once (exit 5, no retry) and
   transform/train/evaluate never run.
3b. The pipeline with two symbols (params.yaml data.symbols, listed by `rps symbols`), BTC-USDT
   from a corrupted slice of ../shared/data's Binance file and ETH-USD from a slice of the 30-minute
   ETH file: BTC-USDT's branch stops at its gate, ETH-USD trains and is promoted, and the summary
   task names both and fails the run.
4. The pipeline with RPS_AIRFLOW_STREAM_RECONCILE=true against a real PostgreSQL (started by
   tests/servers/postgres.sh, or make test's shared one; skipped without PostgreSQL) holding streamed candles:
   reconcile runs `rps stream reconcile` after evaluate and writes the champion's predictions.
5. RPS_AIRFLOW_POOLING=pooled (params.yaml train.pooling: pooled) with two hourly symbols and
   reconcile on: each symbol's extract, quality, transform, ONE train and ONE evaluate, then each
   symbol's reconcile writing the one pooled model's predictions of that symbol's stored bars.
"""

import csv
import json
import os
import pathlib
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from datetime import datetime, timezone

import pytest

from rps_dag_testing import DAGS, NO_AIRFLOW, ROOT, clean_env

pytest.importorskip("airflow", reason=NO_AIRFLOW)

AIRFLOW = pathlib.Path(sys.executable).parent / "airflow"
SAMPLE = ROOT / "data/sample/btc_usdt_1h_binance_2020-2021.csv"
PIPELINE = "crypto_volatility_pipeline"
EXTRACT = "crypto_volatility_extract"
TOKEN = "airflow-test-token"
HOUR_MS = 3_600_000


def ms(text):
    return int(datetime.fromisoformat(text).replace(tzinfo=timezone.utc).timestamp() * 1000)


@pytest.fixture(scope="module")
def bin_dir():
    value = os.environ.get("RPS_BIN_DIR")
    if not value:
        pytest.skip("RPS_BIN_DIR is not set (the folder holding rps and rps-*): run through `make test`")
    path = pathlib.Path(value)
    if not (path / "rps").is_file():
        pytest.skip(f"RPS_BIN_DIR={value} holds no rps binary: build it (make build)")
    return path


class Airflow:
    """One AIRFLOW_HOME with its sqlite DB, and the `airflow` CLI run against it."""

    def __init__(self, home, bin_dir):
        self.home = home
        self.bin_dir = bin_dir
        self.base_env = clean_env(
            {
                "AIRFLOW_HOME": str(home),
                "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "PYTHONDONTWRITEBYTECODE": "1",
            }
        )

    def cli(self, *args, env=None, timeout=600):
        run_env = dict(self.base_env, **(env or {}))
        started = time.monotonic()
        out = subprocess.run(
            [str(AIRFLOW), *args],
            check=False,
            env=run_env,
            cwd=self.home,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        out.seconds = time.monotonic() - started
        return out

    def dags_test(self, dag_id, logical_date, rps_home, params, reports, **settings):
        env = {
            "RPS_AIRFLOW_EXECUTOR": "local",
            "RPS_BIN": str(self.bin_dir / "rps"),
            "RPS_HOME": str(rps_home),
            "RPS_PARAMS": str(params),
            "RPS_AIRFLOW_REPORT_DIR": str(reports),
            "RPS_AIRFLOW_WORKDIR": str(self.home),
            # A short retry delay, so that an unexpected retry shows up as try_number 2, not a hang.
            "RPS_AIRFLOW_RETRY_DELAY_SECONDS": "1",
            **settings,
        }
        out = self.cli("dags", "test", dag_id, logical_date, env=env)
        return out, self.task_states(dag_id)

    def latest_run(self, db, dag_id):
        row = db.execute("SELECT run_id FROM dag_run WHERE dag_id = ? ORDER BY id DESC LIMIT 1", (dag_id,)).fetchone()
        assert row, f"no run of {dag_id} in the metadata DB"
        return row[0]

    def task_states(self, dag_id):
        """task_id -> (state, try_number) of the latest run of dag_id; a task of the per-symbol
        group as `task_id[SYMBOL]` (the symbols task's XCom at its map index) when the run named
        symbols, as plain `task_id` in the one default branch (no symbols configured)."""
        with sqlite3.connect(self.home / "airflow.db") as db:
            rows = db.execute(
                "SELECT task_id, map_index, rendered_map_index, state, try_number FROM task_instance"
                " WHERE dag_id = ? AND run_id = ?",
                (dag_id, self.latest_run(db, dag_id)),
            ).fetchall()
        symbols = self.xcom(dag_id, "symbols") or []
        states = {}
        for task, index, label, state, tries in rows:
            symbol = symbols[index] if 0 <= index < len(symbols) else ""
            if label is not None:  # instances that ran are labelled with their symbol in the UI
                assert label == (symbol or "default"), (task, index, label, symbol)
            key = f"{task}[{symbol}]" if symbol else task
            assert key not in states, f"two task instances as {key}"
            states[key] = (state, tries)
        return states

    def xcom(self, dag_id, task_id, key="return_value", map_index=-1):
        """An XCom value of the latest run of dag_id (JSON), None if there is none."""
        with sqlite3.connect(self.home / "airflow.db") as db:
            row = db.execute(
                "SELECT value FROM xcom WHERE dag_id = ? AND run_id = ? AND task_id = ? AND key = ? AND map_index = ?",
                (dag_id, self.latest_run(db, dag_id), task_id, key, map_index),
            ).fetchone()
        return None if row is None else json.loads(row[0])


def log_tail(out, lines=60):
    text = (out.stdout + out.stderr).splitlines()
    return "\n".join(text[-lines:])


def params_reading(tmp, csv_path):
    """params.yaml of the repository, reading `csv_path` instead of the relative sample path."""
    text = (ROOT / "params.yaml").read_text()
    assert "path: data/sample/btc_usdt_1h_binance_2020-2021.csv" in text
    path = tmp / f"params-{csv_path.stem}.yaml"
    path.write_text(text.replace("path: data/sample/btc_usdt_1h_binance_2020-2021.csv", f"path: {csv_path}"))
    return path


def raw_span(rps_home):
    manifest = json.loads((rps_home / "data/raw/BTC-USDT/_manifest.json").read_text())
    parts = manifest["partitions"]
    return sum(p["rows"] for p in parts), min(p["first_ts"] for p in parts), max(p["last_ts"] for p in parts)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url):
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


@pytest.fixture(scope="module")
def airflow(bin_dir, tmp_path_factory):
    home = tmp_path_factory.mktemp("airflow-home")
    af = Airflow(home, bin_dir)
    out = af.cli("db", "migrate")
    assert out.returncode == 0, log_tail(out)
    yield af
    shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="module")
def serve(bin_dir, tmp_path_factory):
    """`rps serve` on the registry the pipeline run will write, waiting for its first model."""
    rps_home = tmp_path_factory.mktemp("rps-home")
    port = free_port()
    env = clean_env({"RPS_SERVE_TOKEN": TOKEN, "NO_COLOR": "1"})
    args = [
        str(bin_dir / "rps"),
        "serve",
        "--registry",
        str(rps_home / "registry"),
        "--wait-for-model",
        "--bind",
        f"127.0.0.1:{port}",
    ]
    with open(rps_home.parent / "serve.log", "w") as log:  # the child keeps its own descriptor
        process = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            status, _ = http_get(f"{url}/health")
            if status == 200:
                break
        except OSError:
            pass
        assert process.poll() is None, "rps serve exited"
        assert time.monotonic() < deadline, "rps serve did not come up"
        time.sleep(0.2)
    yield url, rps_home
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def test_extract_dag_fetches_exactly_its_data_interval(airflow, tmp_path):
    rps_home = tmp_path / "rps-home"
    # A monthly schedule: logical date 2021-06-01 is the interval [2021-05-01, 2021-06-01), a
    # month without gaps in the sample.
    out, states = airflow.dags_test(
        EXTRACT,
        "2021-06-01T00:00:00+00:00",
        rps_home,
        params_reading(tmp_path, SAMPLE),
        tmp_path / "reports",
        RPS_AIRFLOW_EXTRACT_SCHEDULE="@monthly",
    )
    assert out.returncode == 0, log_tail(out)
    assert states == {t: ("success", 1) for t in ("params_symbols", "symbols", "extract", "quality", "summary")}, log_tail(out)
    # params.yaml's one symbol, from `rps symbols` (params_symbols' XCom): one symbol is no list.
    assert airflow.xcom(EXTRACT, "params_symbols") == ["BTC-USDT"]
    # No symbols configured: one branch, `rps extract` without --symbol, as before #20.
    assert airflow.xcom(EXTRACT, "symbols") == [""]
    assert "/rps extract --start 2021-05-01T00:00:00Z" in out.stdout + out.stderr
    rows, first, last = raw_span(rps_home)
    assert (rows, first, last) == (31 * 24, ms("2021-05-01T00:00:00"), ms("2021-05-31T23:00:00"))
    assert "--start 2021-05-01T00:00:00Z --end 2021-06-01T00:00:00Z" in out.stdout + out.stderr
    assert json.loads((tmp_path / "reports/quality.json").read_text())["passed"] is True


def test_pipeline_runs_every_stage_on_the_sample_and_refreshes_serving(airflow, serve, tmp_path):
    serve_url, rps_home = serve
    reports = tmp_path / "reports"
    status, _ = http_get(f"{serve_url}/ready")
    assert status == 503, "serve must start without a model"
    # A yearly schedule: logical date 2022-01-01 is the interval [2021-01-01, 2022-01-01), the
    # sample's second year.
    out, states = airflow.dags_test(
        PIPELINE,
        "2022-01-01T00:00:00+00:00",
        rps_home,
        params_reading(tmp_path, SAMPLE),
        reports,
        RPS_AIRFLOW_PIPELINE_SCHEDULE="@yearly",
        RPS_AIRFLOW_SERVE_URL=serve_url,
        RPS_SERVE_TOKEN=TOKEN,
    )
    print(f"airflow dags test {PIPELINE}: {out.seconds:.0f} s")
    assert out.returncode == 0, log_tail(out)
    tasks = ["params_symbols", "symbols", "extract", "quality", "transform", "train", "evaluate", "refresh_serving", "summary"]
    assert states == {t: ("success", 1) for t in tasks}, log_tail(out)
    assert airflow.xcom(PIPELINE, "evaluate", "promoted", map_index=0) is True  # the first version
    summary = airflow.xcom(PIPELINE, "summary")
    assert (summary["trained"], summary["promoted"], summary["failed"]) == (["default"], ["default"], {}), summary

    # 8,760 hours less the 13 missing in 2021.
    assert raw_span(rps_home) == (8747, ms("2021-01-01T00:00:00"), ms("2021-12-31T23:00:00"))
    assert (rps_home / "data/features/BTC-USDT/features.parquet").is_file()
    for name in ("model.json", "model.ubj", "meta.json"):
        assert (rps_home / "models/candidate" / name).stat().st_size > 0, name
    for name in ("quality.json", "quality.html", "metrics.json", "evaluation.md", "predictions.csv"):
        assert (reports / name).stat().st_size > 0, name
    assert json.loads((reports / "quality.json").read_text())["passed"] is True
    aliases = json.loads((rps_home / "registry/btc-volatility/aliases.json").read_text())
    assert "champion" in json.dumps(aliases), aliases

    # refresh_serving's POST made the running server load the new champion.
    status, body = http_get(f"{serve_url}/ready")
    assert status == 200, body
    status, body = http_get(f"{serve_url}/model")
    assert status == 200 and json.loads(body)["alias"] == "champion", body


def corrupt_sample(path):
    """The sample with high and low swapped (and widened) on every 40th hour: extracts, fails OHLC."""
    with open(SAMPLE, newline="") as src, open(path, "w", newline="") as dst:
        reader, writer = csv.reader(src), csv.writer(dst)
        header = next(reader)
        writer.writerow(header)
        high, low = header.index("high"), header.index("low")
        for i, row in enumerate(reader):
            if i % 40 == 7:
                row[high], row[low] = f"{float(row[low]) * 0.9:.2f}", f"{float(row[high]) * 1.1:.2f}"
            writer.writerow(row)
    return path


def test_a_failed_quality_gate_stops_the_pipeline_before_training(airflow, tmp_path):
    rps_home = tmp_path / "rps-home"
    reports = tmp_path / "reports"
    bad = corrupt_sample(tmp_path / "btc_broken_ohlc.csv")
    out, states = airflow.dags_test(
        PIPELINE,
        "2022-01-01T00:00:00+00:00",
        rps_home,
        params_reading(tmp_path, bad),
        reports,
        RPS_AIRFLOW_PIPELINE_SCHEDULE="@yearly",
    )
    assert out.returncode != 0, "the DAG run must fail"
    assert states["summary"] == ("failed", 1), states  # the summary says so, and fails the run
    assert airflow.xcom(PIPELINE, "summary")["failed"] == {"default": "quality"}
    assert states["extract"] == ("success", 1)
    # Exit 5 is final: one try although the task has retries left.
    assert states["quality"] == ("failed", 1), log_tail(out)
    for task in ("transform", "train", "evaluate"):
        assert states[task][0] == "upstream_failed", states
    assert "rps quality exited 5 (quality gate failed)" in out.stdout + out.stderr

    report = json.loads((reports / "quality.json").read_text())
    assert report["passed"] is False
    failed = {c["name"] for c in report["checks"] if not c["passed"]}
    assert "ohlc_sanity" in failed, failed
    # Nothing downstream of the gate was produced.
    assert not (rps_home / "data/features").exists()
    assert not (rps_home / "models").exists()
    assert not (rps_home / "registry").exists()
    assert not (reports / "metrics.json").exists()


# --------------------------------------------------------------------------------------------
# Two symbols, one corrupted: that symbol's branch stops at its gate, the other trains
# --------------------------------------------------------------------------------------------

SHARED_DATA = pathlib.Path(os.environ.get("RPS_SHARED_DATA", ROOT.parent / "shared" / "data"))
BTC_BINANCE = SHARED_DATA / "btc_usdt_1h_binance_2017-08_2021-12.csv"
ETH_30M = SHARED_DATA / "eth_usd_30m_2017-10_2019-10.csv"
ETH_COLUMNS = {"timestamp": "Date", "open": "ETH.open", "high": "ETH.high", "low": "ETH.low", "close": "ETH.close", "volume": "ETH.volume"}
# A quarterly schedule: logical date 2019-07-01 is the interval [2019-04-01, 2019-07-01), which
# both files cover (2,184 hours: enough for the features' 28-day history and the three splits).
QUARTERLY = "0 0 1 */3 *"
SPAN = ("2019-03-25 00:00:00", "2019-07-08 00:00:00")  # a little either side: extract keeps the window


def csv_slice(src, dst, time_column, corrupt=False, span=SPAN):
    """The rows of `src` within `span` (its text timestamps sort as times); with `corrupt`, high and
    low swapped and widened on every 40th row, as corrupt_sample does."""
    with open(src, newline="") as fin, open(dst, "w", newline="") as fout:
        reader, writer = csv.reader(fin), csv.writer(fout)
        header = next(reader)
        writer.writerow(header)
        t = header.index(time_column)
        kept = 0
        for row in reader:
            if not span[0] <= row[t] < span[1]:
                continue
            if corrupt and kept % 40 == 7:
                high, low = header.index("high"), header.index("low")
                row[high], row[low] = f"{float(row[low]) * 0.9:.2f}", f"{float(row[high]) * 1.1:.2f}"
            writer.writerow(row)
            kept += 1
    return dst


def two_symbol_params(tmp, btc_csv, eth_csv):
    """params.yaml of the repository with data.symbols (#20): BTC-USDT from a Binance slice,
    ETH-USD from the 30-minute Coinbase-style file; a quicker training (fewer rounds, no
    walk-forward) so that the run stays short on two cores."""
    import yaml

    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    data = params["data"]
    data.pop("symbol", None)  # data.symbols lists every symbol (both at once is an error)
    # An entry is merged into data: key by key, so the Binance-only order-flow columns go into
    # BTC-USDT's entry, not the shared mapping the ETH file could not satisfy.
    btc_columns = data["file"]["columns"]
    data["file"]["columns"] = {k: v for k, v in btc_columns.items() if k in ETH_COLUMNS}
    data["symbols"] = {
        "BTC-USDT": {"file": {"path": str(btc_csv), "columns": btc_columns}},
        "ETH-USD": {"interval": "30m", "file": {"path": str(eth_csv), "columns": ETH_COLUMNS}},
    }
    params["train"]["model_name"] = "{symbol}-volatility"  # one registered model per symbol
    params["train"]["signal_model_name"] = "{symbol}-signal"
    params["train"]["num_boost_round"] = 150
    params["train"]["early_stopping_rounds"] = 20
    params["evaluate"]["walk_forward_folds"] = 0
    path = tmp / "params-two-symbols.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def test_two_symbols_a_corrupted_one_stops_alone_and_the_summary_names_both(airflow, bin_dir, tmp_path):
    if not (BTC_BINANCE.is_file() and ETH_30M.is_file()):
        pytest.skip(f"{SHARED_DATA} does not hold {BTC_BINANCE.name} and {ETH_30M.name} (set RPS_SHARED_DATA)")
    rps_home = tmp_path / "rps-home"
    reports = tmp_path / "reports"
    btc = csv_slice(BTC_BINANCE, tmp_path / "btc_broken_ohlc.csv", "date", corrupt=True)
    eth = csv_slice(ETH_30M, tmp_path / "eth_usd_30m.csv", "Date")
    params = two_symbol_params(tmp_path, btc, eth)
    listed = subprocess.run(
        [str(bin_dir / "rps"), "symbols", "--params", str(params)], env=clean_env(), capture_output=True, text=True, timeout=60
    )
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout) == ["BTC-USDT", "ETH-USD"]

    # No Variable, no RPS_AIRFLOW_SYMBOLS: the run takes params.yaml's list from params_symbols
    # (`rps symbols --output`, a local process here, a pod with the params ConfigMap in Kubernetes).
    out, states = airflow.dags_test(
        PIPELINE,
        "2019-07-01T00:00:00+00:00",
        rps_home,
        params,
        reports,
        RPS_AIRFLOW_PIPELINE_SCHEDULE=QUARTERLY,
    )
    print(f"airflow dags test {PIPELINE} with two symbols: {out.seconds:.0f} s")
    log = out.stdout + out.stderr
    assert out.returncode != 0, "a symbol stopped: the run must fail"
    assert airflow.xcom(PIPELINE, "params_symbols") == ["BTC-USDT", "ETH-USD"]
    assert airflow.xcom(PIPELINE, "symbols") == ["BTC-USDT", "ETH-USD"]
    assert states["symbols"] == ("success", 1)

    # BTC-USDT: its gate failed once (exit 5, no retry); its branch stopped there.
    assert states["extract[BTC-USDT]"] == ("success", 1), states
    assert states["quality[BTC-USDT]"] == ("failed", 1), states
    for task in ("transform", "train", "evaluate"):
        assert states[f"{task}[BTC-USDT]"][0] == "upstream_failed", states
    assert "rps quality exited 5 (quality gate failed)" in log
    # ETH-USD went all the way: trained and, as the first version, promoted.
    for task in ("extract", "quality", "transform", "train", "evaluate"):
        assert states[f"{task}[ETH-USD]"] == ("success", 1), (task, states)
    assert "--symbol ETH-USD" in log and "--symbol BTC-USDT" in log
    assert airflow.xcom(PIPELINE, "evaluate", "promoted", map_index=1) is True

    # The summary names both, and fails the run because of BTC-USDT.
    assert states["summary"] == ("failed", 1), states
    summary = airflow.xcom(PIPELINE, "summary")
    assert summary["trained"] == ["ETH-USD"] and summary["promoted"] == ["ETH-USD"], summary
    assert summary["failed"] == {"BTC-USDT": "quality"}, summary
    assert summary["symbols"]["BTC-USDT"]["outcome"] == "stopped at quality: failed"
    assert summary["symbols"]["ETH-USD"]["outcome"] == "promoted"
    assert "BTC-USDT stopped at quality" in log

    # Per-symbol folders, as rps lays them out with several symbols.
    bad = json.loads((reports / "BTC-USDT/quality.json").read_text())
    assert bad["passed"] is False and "ohlc_sanity" in {c["name"] for c in bad["checks"] if not c["passed"]}
    assert json.loads((reports / "ETH-USD/quality.json").read_text())["passed"] is True
    assert (reports / "ETH-USD/metrics.json").stat().st_size > 0
    assert not (reports / "BTC-USDT/metrics.json").exists()
    assert (rps_home / "models/ETH-USD/candidate/model.json").stat().st_size > 0
    assert not (rps_home / "models/BTC-USDT").exists()
    assert not (rps_home / "data/features/BTC-USDT").exists()


# --------------------------------------------------------------------------------------------
# reconcile: the stream's stored predictions follow the live set (real PostgreSQL)
# --------------------------------------------------------------------------------------------

PG_SCRIPT = ROOT / "tests/servers/postgres.sh"


def psql(url, *args):
    out = subprocess.run(["psql", url, "-v", "ON_ERROR_STOP=1", "-qAt", *args], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


@pytest.fixture(scope="module")
def postgres():
    """A PostgreSQL admin URL: the tests' shared server when `make test` started it
    (RPS_TEST_DATABASE_URL), else a throwaway cluster from tests/servers/postgres.sh."""
    shared = os.environ.get("RPS_TEST_DATABASE_URL")
    if shared:
        yield shared
        return
    if not shutil.which("psql"):
        pytest.skip("psql is not on PATH (make setup-tools installs PostgreSQL)")
    # Not under pytest's 0700 temp root: the script keeps its state there as this user.
    state = tempfile.mkdtemp(prefix="rps-airflow-pg-")
    try:
        out = subprocess.run(["bash", str(PG_SCRIPT), "start", sys.executable, state], capture_output=True, text=True, timeout=180)
        if out.returncode != 0 and "not found" in out.stderr:
            pytest.skip(out.stderr.strip())
        assert out.returncode == 0, out.stderr
        yield out.stdout.strip().rsplit("RPS_TEST_DATABASE_URL=", 1)[1]
    finally:
        subprocess.run(["bash", str(PG_SCRIPT), "stop", state], capture_output=True, timeout=120)
        shutil.rmtree(state, ignore_errors=True)


def test_pipeline_reconciles_the_stream_database(airflow, postgres, bin_dir, tmp_path):
    admin = postgres
    db = f"rps_airflow_reconcile_{os.getpid()}"
    psql(admin, "-c", f"DROP DATABASE IF EXISTS {db}")
    psql(admin, "-c", f"CREATE DATABASE {db}")
    url = admin.rsplit("/", 1)[0] + "/" + db
    params = params_reading(tmp_path, SAMPLE)
    env = clean_env({"DATABASE_URL": url, "NO_COLOR": "1"})
    migrate = subprocess.run(
        [str(bin_dir / "rps"), "stream", "--params", str(params), "migrate"], env=env, capture_output=True, text=True, timeout=120
    )
    assert migrate.returncode == 0, migrate.stderr
    # What `rps stream consume` would have stored: the last 1000 bars of the sample.
    with open(SAMPLE, newline="") as src:
        rows = list(csv.DictReader(src))[-1000:]
    candles = tmp_path / "candles.csv"
    with open(candles, "w", newline="") as dst:
        writer = csv.writer(dst)
        for r in rows:
            writer.writerow(
                ["BTC-USDT", r["date"] + "+00", r["open"], r["high"], r["low"], r["close"], r["volume"]]
                + [r["quote_asset_volume"], r["number_of_trades"], r["taker_buy_base_asset_volume"], r["taker_buy_quote_asset_volume"]]
            )
    columns = "symbol, bar_time, open, high, low, close, volume, quote_volume, trades, taker_buy_volume, taker_buy_quote_volume"
    psql(url, "-c", f"\\copy candles ({columns}) FROM '{candles}' WITH (FORMAT csv)")
    assert psql(url, "-c", "SELECT count(*) FROM predictions") == "0"

    rps_home = tmp_path / "rps-home"
    out, states = airflow.dags_test(
        PIPELINE,
        "2022-01-01T00:00:00+00:00",
        rps_home,
        params,
        tmp_path / "reports",
        RPS_AIRFLOW_PIPELINE_SCHEDULE="@yearly",
        RPS_AIRFLOW_STREAM_RECONCILE="true",
        DATABASE_URL=url,
    )
    print(f"airflow dags test {PIPELINE} with reconcile: {out.seconds:.0f} s")
    assert out.returncode == 0, log_tail(out)
    tasks = ["params_symbols", "symbols", "extract", "quality", "transform", "train", "evaluate", "reconcile", "summary"]
    assert states == {t: ("success", 1) for t in tasks}, log_tail(out)
    assert "stream reconcile" in out.stdout + out.stderr

    # The champion evaluate just promoted (version 1: also the baseline) predicted the stored bars.
    found = psql(url, "-c", "SELECT model, version, alias, task, count(*), count(volatility) FROM predictions GROUP BY 1, 2, 3, 4")
    (row,) = found.splitlines()
    model, version, alias, task, n, n_vol = row.split("|")
    assert (model, version, task) == ("btc-volatility", "1", "volatility"), row
    assert "champion" in alias.split(","), row
    # One row per bar with complete features: at most the stored bars, most of them.
    assert 500 < int(n) <= 1000 and n_vol == n, row


# --------------------------------------------------------------------------------------------
# Pooled (train.pooling: pooled): one train and one evaluate for two symbols, then reconcile
# --------------------------------------------------------------------------------------------

COINBASE = SHARED_DATA / "btc_usd_1h_coinbase_2017-07_2018-12.csv"
COINBASE_COLUMNS = {"timestamp": "timestamp_utc", "open": "open", "high": "high", "low": "low", "close": "close", "volume": "volume_btc"}
# Logical date 2018-07-01 of the quarterly schedule: [2018-04-01, 2018-07-01), which both hourly
# files cover (the Coinbase file ends in 2018-12).
SPAN_2018 = ("2018-03-25", "2018-07-08")


def pooled_params(tmp, binance_csv, coinbase_csv):
    """params.yaml with two hourly symbols (BTC-USDT from Binance, BTC-USD from Coinbase), pooled
    under one model name, without the order-flow features (Coinbase has none: pooling needs the
    same columns for every symbol); a quicker training, as two_symbol_params."""
    import yaml

    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    data = params["data"]
    binance_columns = data["file"]["columns"]
    data["file"]["columns"] = COINBASE_COLUMNS
    data["symbols"] = {
        "BTC-USDT": {"file": {"path": str(binance_csv), "columns": binance_columns}},
        "BTC-USD": {"file": {"path": str(coinbase_csv), "columns": COINBASE_COLUMNS}},
    }
    params["features"]["flow"] = "off"
    params["train"].update(
        pooling="pooled", model_name="crypto-volatility", signal_model_name="crypto-signal", num_boost_round=150, early_stopping_rounds=20
    )
    params["evaluate"]["walk_forward_folds"] = 0
    path = tmp / "params-pooled.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def test_pooled_two_symbols_train_once_and_each_symbol_is_reconciled(airflow, postgres, bin_dir, tmp_path):
    if not (BTC_BINANCE.is_file() and COINBASE.is_file()):
        pytest.skip(f"{SHARED_DATA} does not hold {BTC_BINANCE.name} and {COINBASE.name} (set RPS_SHARED_DATA)")
    binance = csv_slice(BTC_BINANCE, tmp_path / "btc_usdt.csv", "date", span=SPAN_2018)
    coinbase = csv_slice(COINBASE, tmp_path / "btc_usd.csv", "timestamp_utc", span=SPAN_2018)
    params = pooled_params(tmp_path, binance, coinbase)
    symbols = ["BTC-USDT", "BTC-USD"]

    # The stream database: what `rps stream consume` stored of each symbol (its last 600 bars).
    admin = postgres
    db = f"rps_airflow_pooled_{os.getpid()}"
    psql(admin, "-c", f"DROP DATABASE IF EXISTS {db}")
    psql(admin, "-c", f"CREATE DATABASE {db}")
    url = admin.rsplit("/", 1)[0] + "/" + db
    env = clean_env({"DATABASE_URL": url, "NO_COLOR": "1"})
    migrate = subprocess.run(
        [str(bin_dir / "rps"), "stream", "--params", str(params), "migrate"], env=env, capture_output=True, text=True, timeout=120
    )
    assert migrate.returncode == 0, migrate.stderr
    candles = tmp_path / "candles.csv"
    with open(candles, "w", newline="") as dst:
        writer = csv.writer(dst)
        for symbol, path, ts in (("BTC-USDT", binance, "date"), ("BTC-USD", coinbase, "timestamp_utc")):
            with open(path, newline="") as src:
                rows = [r for r in csv.DictReader(src) if r[ts] < "2018-07-01"][-600:]
            volume = "volume" if symbol == "BTC-USDT" else "volume_btc"
            for r in rows:
                when = r[ts].replace("T", " ").rstrip("Z")
                writer.writerow([symbol, when + "+00", r["open"], r["high"], r["low"], r["close"], r[volume]])
    psql(url, "-c", f"\\copy candles (symbol, bar_time, open, high, low, close, volume) FROM '{candles}' WITH (FORMAT csv)")

    rps_home = tmp_path / "rps-home"
    reports = tmp_path / "reports"
    out, states = airflow.dags_test(
        PIPELINE,
        "2018-07-01T00:00:00+00:00",
        rps_home,
        params,
        reports,
        RPS_AIRFLOW_PIPELINE_SCHEDULE=QUARTERLY,
        RPS_AIRFLOW_POOLING="pooled",
        RPS_AIRFLOW_STREAM_RECONCILE="true",
        DATABASE_URL=url,
    )
    print(f"airflow dags test {PIPELINE}, pooled, two symbols, reconcile: {out.seconds:.0f} s")
    log = out.stdout + out.stderr
    assert out.returncode == 0, log_tail(out)
    assert airflow.xcom(PIPELINE, "symbols") == symbols
    want = {t: ("success", 1) for t in ("params_symbols", "symbols", "train", "evaluate", "summary")}
    want.update({f"{t}[{s}]": ("success", 1) for t in ("extract", "quality", "transform", "reconcile") for s in symbols})
    assert states == want, log_tail(out)
    # One train and one evaluate, without --symbol; each symbol's reconcile with it.
    train = [line for line in log.splitlines() if "running " in line and "/rps train" in line]
    assert train and all("--symbol" not in line for line in train), train
    for s in symbols:
        assert f"stream reconcile --symbol {s}" in log, s
    assert airflow.xcom(PIPELINE, "evaluate", "promoted") is True  # the first pooled version
    summary = airflow.xcom(PIPELINE, "summary")
    assert summary["promoted"] == symbols and summary["failed"] == {}, summary
    assert {e["outcome"] for e in summary["symbols"].values()} == {"promoted (pooled)"}, summary

    schema = json.loads((rps_home / "models/pooled/candidate/schema.json").read_text())
    assert schema["symbols"] == symbols
    metrics = json.loads((reports / "pooled/metrics.json").read_text())
    assert [s["symbol"] for s in metrics["by_symbol"]] == symbols

    # Each symbol's stored bars predicted by the one pooled version (its champion), and the
    # forecasts differ between the two symbols' rows of the same hour (their one-hots differ).
    found = psql(url, "-c", "SELECT symbol, model, version, alias, count(*) FROM predictions GROUP BY 1, 2, 3, 4 ORDER BY 1")
    rows = [r.split("|") for r in found.splitlines()]
    assert [r[0] for r in rows] == sorted(symbols), found
    for symbol, model, version, alias, n in rows:
        assert (model, version) == ("crypto-volatility", "1") and "champion" in alias.split(","), found
        assert 300 < int(n) <= 600, found
    differ = psql(
        url,
        "-c",
        "SELECT count(*) FROM predictions a JOIN predictions b USING (bar_time, model, version)"
        " WHERE a.symbol = 'BTC-USDT' AND b.symbol = 'BTC-USD' AND a.volatility <> b.volatility",
    )
    assert int(differ) > 300, differ
