"""DVC as its users drive it, on a git copy of the project's DVC files and the bundled sample:
`dvc repro`, `dvc plots show` rendered in headless Chromium with the network blocked, and
`dvc exp run -S …` / `dvc exp show` / `dvc metrics diff` comparing a baseline with an experiment;
and the pooled pipeline (`train.pooling: pooled`, `dvc repro pooled/dvc.yaml`) over two symbols.

Needs dvc (the test venv, requirements-data.txt), chromium (make test's setup-tools; or set
RPS_CHROMIUM) and the stage binaries in RPS_BIN_DIR (`rps <stage>` is dvc.yaml's command)."""
import html.parser
import importlib.util
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile
import time

import pytest

from rps_testing import ROOT, bin_dir, stage_env

# What tests/pipeline/tests/storage.rs copies, plus what `dvc plots show` and git need.
PROJECT_FILES = [
    "dvc.yaml",
    "pooled/dvc.yaml",
    "params.yaml",
    ".dvcignore",
    ".gitignore",
    ".dvc/config",
    ".dvc/.gitignore",
    ".dvc/plots/timeseries.json",
    ".dvc/plots/offline.html",
    "data/sample/btc_usdt_1h_binance_2020-2021.csv",
]
# The y columns of dvc.yaml's realized-vs-forecast plot (reports/plots/<symbol>.csv).
Y_COLUMNS = ["realized", "model", "har_rv", "ewma"]
# Shorter training for these tests (they check DVC, not the model): fewer rounds, no walk-forward.
FAST_PARAMS = [("num_boost_round: 2000", "num_boost_round: 200"), ("walk_forward_folds: 6 ", "walk_forward_folds: 0 ")]


def dvc_exe() -> str:
    exe = pathlib.Path(sys.executable).parent / "dvc"
    if not exe.exists():
        pytest.skip(f"dvc is not installed next to {sys.executable} (make setup-python installs it)")
    return str(exe)


def chromium_exe() -> str:
    name = os.environ.get("RPS_CHROMIUM", "chromium")
    exe = shutil.which(name)
    if not exe:
        pytest.skip(f"{name} is not installed (make setup-tools installs the Debian package)")
    return exe


def dvc(repo, *args, env, timeout=600):
    out = subprocess.run([dvc_exe(), *args], cwd=repo, env=env, capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, f"dvc {' '.join(args)} failed ({out.returncode}):\n{out.stdout}\n{out.stderr}"
    return out.stdout


def git(repo, *args):
    out = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, f"git {' '.join(args)} failed:\n{out.stderr}"
    return out.stdout


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A git repository holding the project's DVC files after `dvc repro` and a commit of
    everything git does not ignore."""
    repo = tmp_path_factory.mktemp("dvc-project")
    for f in PROJECT_FILES:
        (repo / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / f, repo / f)
    params = (repo / "params.yaml").read_text()
    for old, new in FAST_PARAMS:
        assert old in params, f"params.yaml no longer has {old!r}"
        params = params.replace(old, new)
    (repo / "params.yaml").write_text(params)
    git(repo, "init", "-q")
    git(repo, "config", "user.email", "test@example.invalid")
    git(repo, "config", "user.name", "test")
    git(repo, "config", "commit.gpgsign", "false")
    env = stage_env(PATH=f"{bin_dir()}{os.pathsep}{pathlib.Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", DVC_NO_ANALYTICS="1", NO_COLOR="1")
    started = time.monotonic()
    dvc(repo, "repro", env=env)
    print(f"dvc repro: {time.monotonic() - started:.1f} s")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "baseline")
    return repo, env


# --- dvc plots show -------------------------------------------------------------------------


class SvgCharts(html.parser.HTMLParser):
    """Per rendered <svg>: its line marks (aria label and coordinates) and its legend and axis
    labels, from Vega's SVG output."""

    def __init__(self):
        super().__init__()
        self.charts = []
        self.stack = []  # (tag, class) of the open elements
        self.text_into = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "svg":
            self.charts.append({"lines": [], "legend": [], "axis": []})
        elif tag == "path" and a.get("aria-roledescription") == "line mark" and self.charts:
            pts = re.findall(r"(-?[\d.]+(?:e-?\d+)?),(-?[\d.]+(?:e-?\d+)?)", a.get("d", ""))
            self.charts[-1]["lines"].append({"label": a.get("aria-label", ""), "points": [(float(x), float(y)) for x, y in pts]})
        elif tag == "text" and self.charts:
            classes = " ".join(c for _, c in self.stack)
            if "role-legend-label" in classes:
                self.text_into = self.charts[-1]["legend"]
            elif "role-axis-label" in classes:
                self.text_into = self.charts[-1]["axis"]
        if tag not in ("path", "rect", "line", "circle"):  # void in practice
            self.stack.append((tag, a.get("class", "")))

    def handle_endtag(self, tag):
        while self.stack:
            if self.stack.pop()[0] == tag:
                break
        if tag == "text":
            self.text_into = None

    def handle_data(self, data):
        if self.text_into is not None and data.strip():
            self.text_into.append(data.strip())


def render_offline(page: pathlib.Path) -> str:
    """The DOM of `page` after its scripts ran, in headless Chromium that can reach no network:
    every host name fails to resolve and every request goes to a proxy that is not there."""
    with tempfile.TemporaryDirectory() as profile:
        out = subprocess.run(
            [
                chromium_exe(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-quic", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", f"--user-data-dir={profile}",
                "--host-resolver-rules=MAP * ~NOTFOUND", "--proxy-server=http://127.0.0.1:9",
                "--virtual-time-budget=10000", "--dump-dom", page.as_uri(),
            ],
            capture_output=True, text=True, timeout=120,
        )
    assert out.returncode == 0, f"chromium failed ({out.returncode}):\n{out.stderr}"
    return out.stdout


@pytest.fixture(scope="module")
def plots_page(project):
    repo, env = project
    started = time.monotonic()
    dvc(repo, "plots", "show", env=env)
    print(f"dvc plots show: {time.monotonic() - started:.1f} s")
    return repo / "dvc_plots" / "index.html"


def test_plots_page_has_one_entry_per_plot_and_no_network_scripts(plots_page):
    page = plots_page.read_text()
    # One vega chart (the top-level plot) and one image (evaluate's stage-level plot).
    assert page.count("vegaEmbed('#") == 1, "one vega chart expected"
    assert len(re.findall(r"<img [^>]*predictions\.png", page)) == 1, "predictions.png once"
    assert not re.search(r"<script[^>]+src=", page), "the page loads a script from elsewhere"
    assert "cdn.jsdelivr" not in page


def test_realized_vs_forecast_chart_draws_every_column_on_a_time_axis_offline(plots_page, project):
    repo, _ = project
    rows = (repo / "reports/plots/BTC-USDT.csv").read_text().splitlines()
    header = rows[0].split(",")
    assert header[0] == "ts" and set(Y_COLUMNS) <= set(header), header

    started = time.monotonic()
    dom = render_offline(plots_page)
    print(f"chromium: {time.monotonic() - started:.1f} s")
    parser = SvgCharts()
    parser.feed(dom)
    charts = [c for c in parser.charts if c["lines"]]
    assert len(charts) == 1, f"one chart with lines expected, got {len(charts)} (of {len(parser.charts)} svg)"
    chart = charts[0]

    # One line per y column, named in the legend, each through (nearly) every row of the CSV.
    # (The legend also names the revision: "workspace".)
    assert set(Y_COLUMNS) <= set(chart["legend"]), chart["legend"]
    assert len(chart["lines"]) == len(Y_COLUMNS), [line["label"] for line in chart["lines"]]
    for line in chart["lines"]:
        xs = [x for x, _ in line["points"]]
        assert len(line["points"]) >= 0.9 * (len(rows) - 1), f"{line['label']}: {len(line['points'])} points for {len(rows) - 1} rows"
        assert max(xs) - min(xs) > 500, f"{line['label']}: x spans {min(xs)}..{max(xs)} px"
    # The x axis is time: its labels are dates of the test span, not numbers.
    first = rows[1].split(",")[0][:4]
    assert any(label.startswith(first + "-") for label in chart["axis"]), chart["axis"]


def test_offline_template_carries_exactly_the_pinned_libraries():
    spec = importlib.util.spec_from_file_location("vendor", ROOT / ".dvc/plots/vendor.py")
    vendor = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(vendor)
    assert vendor.check() == []
    for name, *_ in vendor.PINS:
        assert (ROOT / f".dvc/plots/licenses/{name}.LICENSE").read_text().startswith("Copyright (c) 2015")


# --- dvc exp run / exp show / metrics diff --------------------------------------------------


def flat(d, prefix=""):
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def test_experiment_is_compared_with_its_baseline(project):
    repo, env = project
    metrics_file = "reports/BTC-USDT/evaluate/metrics.json"
    # The commit carries the metrics, so DVC can read them at any revision.
    assert metrics_file in git(repo, "ls-files").split(), "metrics.json is not committed"

    started = time.monotonic()
    dvc(repo, "exp", "run", "-n", "eta-0.1", "-S", "train.xgboost.eta=0.1", env=env)
    print(f"dvc exp run: {time.monotonic() - started:.1f} s")

    # `dvc exp show`: the baseline commit and the experiment, each with its metrics.
    rows = json.loads(dvc(repo, "exp", "show", "--json", env=env))
    baseline = next(r for r in rows if r["rev"] != "workspace")
    exps = [e for r in rows for e in (r.get("experiments") or [])]
    exp = next((e for e in exps if e.get("name") == "eta-0.1"), None)
    assert exp is not None, json.dumps(rows)[:2000]

    def metrics_of(rev):
        # A revision without the file is what `dvc exp show` prints as `!`.
        files = rev["data"]["metrics"]
        assert "data" in files.get(metrics_file, {}), f"{rev['rev']}: no {metrics_file}: {files.get(metrics_file)}"
        return flat(files[metrics_file]["data"])

    before = metrics_of(baseline)
    after = metrics_of(exp["revs"][0])
    qlike = "model.qlike"
    assert isinstance(before.get(qlike), float) and isinstance(after.get(qlike), float), sorted(before)[:20]
    assert before[qlike] != after[qlike], "eta changed nothing?"
    assert exp["revs"][0]["data"]["params"]["params.yaml"]["data"]["train"]["xgboost"]["eta"] == 0.1

    # The experiment's evaluate decided and said so, but moved no alias: the champion is still
    # the baseline's version (an experiment never becomes the production champion).
    report = (repo / "reports/BTC-USDT/evaluate/evaluation.md").read_text()
    assert "DVC experiment eta-0.1" in report and "never moves the registry's aliases" in report, report[-2000:]
    aliases = json.loads((repo / ".rps/registry/btc-volatility/aliases.json").read_text())
    assert aliases.get("champion") == 1 and "challenger" not in aliases, aliases

    # `dvc metrics diff`: the workspace (the experiment) against HEAD (the baseline).
    diff = json.loads(dvc(repo, "metrics", "diff", "--json", env=env))
    change = diff[metrics_file][qlike]
    assert change["old"] == before[qlike] and change["new"] == after[qlike], change
    assert abs(change["diff"] - (after[qlike] - before[qlike])) < 1e-12

    # `dvc plots diff`: both revisions' chart data and image load (the image from DVC's cache).
    out = subprocess.run([dvc_exe(), "plots", "diff", "HEAD", "eta-0.1", "-o", "plots_diff"], cwd=repo, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "failed to load" not in out.stdout + out.stderr, out.stdout + out.stderr
    page = (repo / "plots_diff/index.html").read_text()
    assert len(re.findall(r"<img [^>]*predictions\.png", page)) == 2, "one image per revision"



# --- the pooled pipeline: pooled/dvc.yaml -----------------------------------------------------

SAMPLE = "data/sample/btc_usdt_1h_binance_2020-2021.csv"
POOLED_STAGES = {"pooled/dvc.yaml:train", "pooled/dvc.yaml:evaluate"}


def ran(out):
    """The stages `dvc repro` printed as run, e.g. `transform@BTC-USDT`."""
    return set(re.findall(r"^Running stage '([^']+)'", out, re.M))


def upstream(*symbols):
    return {f"{stage}@{s}" for s in symbols for stage in ("extract", "quality", "transform")}


def pooled_params(repo):
    """params.yaml with a second symbol, the sample's 2021 hours (BTC-2021, its own file), and
    `train.pooling: pooled` under one model name; the tests' shorter training."""
    rows = (repo / SAMPLE).read_text().splitlines()
    second = [r for r in rows[1:] if r.startswith("2021-")]
    assert len(second) > 8000, len(second)
    (repo / "data/btc-2021.csv").write_text("\n".join([rows[0], *second]) + "\n")
    params = (repo / "params.yaml").read_text()
    entry = f"      file: {{path: {SAMPLE}}}"
    line = next(l for l in params.splitlines() if l.startswith(entry))
    edits = [
        (line, f"{line}\n    BTC-2021:\n      file: {{path: data/btc-2021.csv}}"),
        ("  pooling: per_symbol", "  pooling: pooled"),
        ("  model_name: btc-volatility", "  model_name: crypto-volatility"),
        ("  signal_model_name: btc-signal", "  signal_model_name: crypto-signal"),
        *FAST_PARAMS,
    ]
    for old, new in edits:
        assert old in params, f"params.yaml no longer has {old!r}"
        params = params.replace(old, new, 1)
    (repo / "params.yaml").write_text(params)


def test_pooled_pipeline_trains_once_over_every_symbol_and_reruns_on_any_symbols_features(tmp_path):
    repo = tmp_path / "pooled-project"
    for f in PROJECT_FILES:
        (repo / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / f, repo / f)
    pooled_params(repo)
    git(repo, "init", "-q")
    env = stage_env(PATH=f"{bin_dir()}{os.pathsep}{pathlib.Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", DVC_NO_ANALYTICS="1", NO_COLOR="1")
    symbols = ("BTC-USDT", "BTC-2021")

    # Every symbol's extract, quality and transform from dvc.yaml, then ONE train and ONE
    # evaluate from pooled/dvc.yaml; no per-symbol train or evaluate.
    started = time.monotonic()
    first = dvc(repo, "repro", "pooled/dvc.yaml", env=env)
    print(f"dvc repro pooled/dvc.yaml: {time.monotonic() - started:.1f} s")
    assert ran(first) == upstream(*symbols) | POOLED_STAGES, first
    schema = json.loads((repo / "models/pooled/candidate/schema.json").read_text())
    assert schema["symbols"] == list(symbols), schema["symbols"]
    assert schema["features"][-2:] == [f"symbol_{s}" for s in symbols]
    metrics = json.loads((repo / "reports/pooled/evaluate/metrics.json").read_text())
    assert metrics["pooling"] == "pooled" and [s["symbol"] for s in metrics["by_symbol"]] == list(symbols), metrics
    aliases = json.loads((repo / ".rps/registry/crypto-volatility/aliases.json").read_text())
    assert aliases.get("champion") == 1, aliases
    assert not (repo / "models/BTC-USDT").exists() and not (repo / "reports/BTC-USDT/evaluate").exists()
    # The pooled stages' params come from the root params.yaml (wdir: ..), recorded in pooled/dvc.lock.
    lock = (repo / "pooled/dvc.lock").read_text()
    assert "params.yaml:" in lock and "pooling: pooled" in lock and "BTC-2021:" in lock, lock

    # Nothing changed: nothing runs.
    again = dvc(repo, "repro", "pooled/dvc.yaml", env=env)
    assert ran(again) == set(), again
    assert "up to date" in dvc(repo, "status", "pooled/dvc.yaml", env=env)

    # New data for one symbol: that symbol's upstream stages, then the pooled train and
    # evaluate (they depend on the data/features folder, which holds every symbol's features).
    path = repo / "data/btc-2021.csv"
    text = path.read_text()
    path.write_text(text[: text.rstrip().rfind("\n") + 1])
    third = dvc(repo, "repro", "pooled/dvc.yaml", env=env)
    assert ran(third) == upstream("BTC-2021") | POOLED_STAGES, third
    assert json.loads((repo / ".rps/registry/crypto-volatility/aliases.json").read_text()).get("champion") in (1, 2)

    # A training knob re-runs the pooled train and evaluate only.
    params = (repo / "params.yaml").read_text()
    assert "    eta: 0.03" in params
    (repo / "params.yaml").write_text(params.replace("    eta: 0.03", "    eta: 0.05"))
    fourth = dvc(repo, "repro", "pooled/dvc.yaml", env=env)
    assert ran(fourth) == POOLED_STAGES, fourth

    # The pooled metrics are DVC metrics.
    shown = json.loads(dvc(repo, "metrics", "show", "--json", env=env))
    pooled_metrics = shown[""]["data"]["reports/pooled/evaluate/metrics.json"]["data"]
    assert pooled_metrics["pooling"] == "pooled", pooled_metrics

    # The root file's per-symbol train refuses pooled mode and names the command to run.
    out = subprocess.run([dvc_exe(), "repro", "train@BTC-USDT"], cwd=repo, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode != 0, out.stdout
    assert "dvc repro pooled/dvc.yaml" in out.stdout + out.stderr, out.stdout + out.stderr
