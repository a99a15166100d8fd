"""The docs stay true: README.md and docs/ have no dead internal link, every `rps` subcommand
flag they show exists in that subcommand's `--help`, every command block marked ```sh tested
runs as shown, and the mdBook builds (`make docs`)."""
import os
import pathlib
import re
import shutil
import subprocess

import pytest

from rps_testing import ROOT, bin_dir, stage_env

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"```[^\n]*\n(.*?)```", re.S)
# Command blocks the docs promise work as pasted: run by test_every_tested_block_runs_as_shown.
TESTED = re.compile(r"```sh tested\n(.*?)```", re.S)
INLINE = re.compile(r"`([^`\n]+)`")
SUBCOMMANDS = {"extract", "quality", "transform", "train", "evaluate", "forecast", "serve", "probe", "stream", "alert-hook"}


def anchors(page: pathlib.Path) -> set:
    """GitHub/mdBook heading anchors of a page."""
    out = set()
    for line in page.read_text().splitlines():
        m = re.match(r"^#{1,6} (.*)", line)
        if m:
            a = re.sub(r"[^\w\- ]", "", m.group(1).strip().lower()).replace(" ", "-")
            out.add(a)
    return out


def test_the_book_lists_every_page_and_no_internal_link_is_dead():
    dead = []
    for page in PAGES:
        text = FENCE.sub("", page.read_text())
        for target in LINK.findall(text):
            if re.match(r"^[a-z]+:", target) or target.startswith("#") and page.name == "SUMMARY.md":
                continue
            path, _, frag = target.partition("#")
            dest = (page.parent / path).resolve() if path else page
            if not dest.exists():
                dead.append(f"{page.relative_to(ROOT)}: {target} (no such file)")
            elif frag and dest.suffix == ".md" and frag not in anchors(dest):
                dead.append(f"{page.relative_to(ROOT)}: {target} (no such heading)")
    assert not dead, "dead links:\n" + "\n".join(dead)
    summary = (ROOT / "docs/SUMMARY.md").read_text()
    listed = {(ROOT / "docs" / t).resolve() for t in LINK.findall(summary)}
    unlisted = [str(p.relative_to(ROOT)) for p in PAGES[1:] if p.name != "SUMMARY.md" and p.resolve() not in listed]
    assert not unlisted, f"pages missing from docs/SUMMARY.md: {unlisted}"


def shown_commands():
    """(page, subcommand, [flags]) for every `rps <sub> ...` line in code blocks and inline code."""
    for page in PAGES:
        text = page.read_text()
        snippets = [l for block in FENCE.findall(text) for l in block.splitlines()] + INLINE.findall(text)
        for line in snippets:
            for m in re.finditer(r"(?:^|[\s;&|(])rps[ -](alert-hook|\w+)((?:\s+[^|;&]*)?)", line):
                sub = m.group(1)
                if sub not in SUBCOMMANDS:
                    continue
                flags = re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", m.group(2) or "")
                yield page, sub, line, flags


def help_text(sub, extra=()):
    out = subprocess.run([str(bin_dir() / "rps"), sub, *extra, "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, f"rps {sub} --help failed: {out.stderr}"
    return out.stdout


def test_every_rps_flag_the_docs_show_exists():
    helps = {}
    missing = []
    seen = 0
    for page, sub, line, flags in shown_commands():
        if sub not in helps:
            helps[sub] = help_text(sub)
            if sub == "stream":
                for s in ("produce", "consume", "reconcile", "migrate"):
                    helps[sub] += help_text(sub, [s])
        for f in flags:
            seen += 1
            if f not in ("--help", "--version") and not re.search(rf"(?<![\w-]){re.escape(f)}(?![\w-])", helps[sub]):
                missing.append(f"{page.relative_to(ROOT)}: `{line.strip()}`: rps {sub} has no {f}")
    assert seen > 20, f"only {seen} flags found: is the pattern broken?"
    assert not missing, "\n".join(missing)


def test_the_book_builds():
    mdbook = shutil.which("mdbook") or os.environ.get("RPS_MDBOOK")
    if not mdbook:
        pytest.fail("mdbook not found: `make docs` installs it (make test does)")
    out_dir = ROOT / "target" / "book-test"
    out = subprocess.run([mdbook, "build", str(ROOT), "--dest-dir", str(out_dir)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert (out_dir / "index.html").exists()
    assert (out_dir / "features.html").read_text().count("<tr>") > 20


@pytest.fixture(scope="module")
def after_make_demo(tmp_path_factory):
    """A folder like a checkout after `make demo`: params.yaml, the bundled sample, the binaries
    where `make build` puts them, and the demo's home `.rps/demo`."""
    proj = tmp_path_factory.mktemp("docs-project")
    shutil.copy(ROOT / "params.yaml", proj)
    shutil.copytree(ROOT / "data" / "sample", proj / "data" / "sample")
    triple = proj / "target" / "x86_64-unknown-linux-musl"
    triple.mkdir(parents=True)
    (triple / "release").symlink_to(bin_dir())
    out = subprocess.run(["bash", str(ROOT / "scripts" / "demo.sh"), str(bin_dir()), ".rps/demo"], cwd=proj,
                         capture_output=True, text=True, timeout=900, env=stage_env(NO_COLOR="1"))
    assert out.returncode == 0, f"the demo failed:\n{out.stderr[-3000:]}"
    return proj


def test_every_tested_block_runs_as_shown(after_make_demo):
    """The ```sh tested blocks of each page, in order, in one folder after `make demo`, by bash -e:
    every command must succeed, no HTTP answer may be an error, and background servers are
    stopped when the block ends. `make …` lines are what `make test` has already done."""
    pages = [(page, TESTED.findall(page.read_text())) for page in PAGES]
    pages = [(page, blocks) for page, blocks in pages if blocks]
    assert sum(len(b) for _, b in pages) >= 4, f"too few tested blocks in {pages}: is the marker gone?"
    env = stage_env(NO_COLOR="1", RPS_SERVE_TOKEN="docs-test-token")
    # A page's blocks run in one shell, in order, as a reader pastes them.
    for page, blocks in pages:
        block = "\n".join(blocks)
        body = "\n".join(l for l in block.splitlines() if not l.startswith("make "))
        script = "set -euo pipefail\ntrap 'kill $(jobs -p) 2>/dev/null || true' EXIT\n" + body
        out = subprocess.run(["bash", "-c", script], cwd=after_make_demo, capture_output=True, text=True, timeout=600, env=env)
        where = f"{page.relative_to(ROOT)}:\n{block}\n--- stdout\n{out.stdout[-2000:]}\n--- stderr\n{out.stderr[-3000:]}"
        assert out.returncode == 0, where
        assert '"error"' not in out.stdout, where
