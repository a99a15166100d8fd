""".github/workflows: actionlint clean (with shellcheck on every `run:`), and the dev → test →
prod flow: what each workflow runs and when."""

import re

import pytest
import yaml

from ship_helpers import ROOT, WORKFLOWS, run, tool

NAMES = ["dev", "test", "prod"]


def load(name: str) -> dict:
    doc = yaml.safe_load((WORKFLOWS / f"{name}.yml").read_text())
    # YAML 1.1 reads the key `on` as True.
    doc["on"] = doc.pop(True, doc.get("on"))
    return doc


def steps(job: dict) -> list[dict]:
    return job["steps"]


def scripts(job: dict) -> str:
    return "\n".join(s.get("run", "") for s in steps(job))


def uses(job: dict) -> list[str]:
    return [s["uses"] for s in steps(job) if "uses" in s]


@pytest.fixture(scope="module")
def wf():
    return {name: load(name) for name in NAMES}


def test_actionlint_clean():
    files = sorted(WORKFLOWS.glob("*.yml"))
    assert [f.stem for f in files] == sorted(NAMES)
    out = run(tool("actionlint"), "-no-color", "-shellcheck", tool("shellcheck"), "-pyflakes", "", *files, cwd=ROOT)
    assert out.returncode == 0, out.stdout + out.stderr


def test_actionlint_can_fail(tmp_path):
    bad = tmp_path / "bad.yml"
    bad.write_text(
        "on: push\njobs:\n  a:\n    runs-on: ubuntu-24.04\n    steps:\n"
        "      - uses: actions/checkout@v4\n        with:\n          fetch-dept: 1\n"
        "      - run: echo ${{ github.event.head_commit.message }} $FOO\n"
    )
    out = run(tool("actionlint"), "-no-color", "-shellcheck", tool("shellcheck"), bad, cwd=tmp_path)
    assert out.returncode != 0
    assert "fetch-dept" in out.stdout and "untrusted" in out.stdout and "SC2086" in out.stdout


def test_every_job_has_a_timeout_and_least_privilege(wf):
    for name, doc in wf.items():
        assert doc["permissions"] == {"contents": "read"}, f"{name}: read-only by default"
        for job_id, job in doc["jobs"].items():
            assert job.get("timeout-minutes"), f"{name}.{job_id}"
            for action in uses(job):
                assert re.search(r"@(v\d+|master|stable)$", action), f"{name}.{job_id}: unpinned {action}"


def test_dev_runs_fmt_clippy_and_tests(wf):
    dev = wf["dev"]
    assert "push" in dev["on"] and "pull_request" in dev["on"]
    everything = "\n".join(scripts(j) for j in dev["jobs"].values())
    assert "cargo fmt --all -- --check" in everything
    assert re.search(r"cargo clippy --workspace --all-targets --locked -- -D warnings", everything)
    assert re.search(r"cargo test .*--workspace", everything)
    assert "pytest" in everything and "tests/python/ship" in everything


def test_test_workflow_reports_the_comparison_and_fails_without_promotion(wf):
    test = wf["test"]
    assert test["on"]["pull_request"]["branches"] == ["master", "main"]
    job = test["jobs"]["pipeline"]
    assert job["permissions"]["pull-requests"] == "write"
    text = scripts(job)
    for stage in ("extract --full-refresh", "quality", "transform", "train"):
        assert f'"$RPS" {stage}' in text, stage
    evaluate = next(s for s in steps(job) if s.get("id") == "evaluate")
    assert "evaluate --report-dir reports --require-promotion" in evaluate["run"]
    assert 'echo "status=$status" >> "$GITHUB_OUTPUT"' in evaluate["run"]
    assert "iterative/setup-cml@v2" in uses(job)
    post = next(s for s in steps(job) if "cml comment create" in s.get("run", ""))
    assert "reports/evaluation.md" in post["run"]
    assert post["env"]["REPO_TOKEN"] == "${{ secrets.GITHUB_TOKEN }}"
    names = [s.get("name", s.get("uses")) for s in steps(job)]
    gate = next(s for s in steps(job) if s.get("if") == "steps.evaluate.outputs.status == '9'")
    assert "exit 9" in gate["run"]
    assert names.index(gate["name"]) > names.index(post["name"]), "post the report before failing the check"
    # The champion comes from the registry the prod workflow saved for the base branch.
    restore = next(s for s in steps(job) if s.get("uses", "").startswith("actions/cache/restore"))
    assert restore["with"]["path"] == ".rps/ci/registry" and job["env"]["RPS_HOME"] == ".rps/ci"


def test_test_workflow_builds_the_image_with_the_builder_stage(wf):
    job = wf["test"]["jobs"]["image"]
    build = next(s for s in steps(job) if s.get("uses", "").startswith("docker/build-push-action"))
    assert build["with"]["file"] == "docker/Dockerfile" and build["with"]["context"] == "."
    assert "BIN_SOURCE" not in build["with"].get("build-args", ""), "CI compiles from source (the default)"
    assert "25000000" in scripts(job)


def test_prod_pushes_the_image_tagged_with_version_and_commit(wf):
    prod = wf["prod"]
    assert prod["on"]["push"]["branches"] == ["master", "main"] and prod["on"]["push"]["tags"] == ["v*"]
    job = prod["jobs"]["image"]
    assert job["permissions"]["packages"] == "write"
    meta = next(s for s in steps(job) if s.get("id") == "meta")["run"]
    assert "workspace.package" in meta and "Cargo.toml" in meta, "the version comes from Cargo.toml"
    assert 'echo "$image:$version"' in meta and 'echo "$image:sha-${GITHUB_SHA::12}"' in meta
    push = [s for s in steps(job) if s.get("uses", "").startswith("docker/build-push-action")]
    assert push[-1]["with"]["push"] is True
    assert push[-1]["with"]["tags"] == "${{ steps.meta.outputs.tags }}"
    assert "REVISION=${{ github.sha }}" in push[-1]["with"]["build-args"]
    assert any(u.startswith("docker/login-action@") for u in uses(job))
    names = [s.get("name", s.get("uses")) for s in steps(job)]
    assert names.index("Check the image") < names.index("Push")


def test_prod_keeps_the_champion_for_the_test_workflow(wf):
    job = wf["prod"]["jobs"]["champion"]
    save = next(s for s in steps(job) if s.get("uses", "").startswith("actions/cache/save"))
    restore = next(s for s in wf["test"]["jobs"]["pipeline"]["steps"] if s.get("uses", "").startswith("actions/cache/restore"))
    assert save["with"]["path"] == restore["with"]["path"]
    assert save["with"]["key"].split("${{")[0] == restore["with"]["restore-keys"].split("${{")[0] == "rps-registry-"


def test_the_version_sed_reads_cargo_toml():
    """The sed expression prod.yml and scripts/image.sh use, run on the real Cargo.toml."""
    from ship_helpers import workspace_version

    meta = next(s for s in load("prod")["jobs"]["image"]["steps"] if s.get("id") == "meta")["run"]
    expr = re.search(r"sed -n '([^']+)' Cargo.toml", meta).group(1)
    assert expr in (ROOT / "scripts" / "image.sh").read_text()
    out = run("sed", "-n", expr, ROOT / "Cargo.toml", check=True)
    assert out.stdout.strip() == workspace_version()
