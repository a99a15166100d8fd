"""The docs stay true: README.md and docs/ have no dead internal link, every `rps` subcommand
flag they show exists in that subcommand's `--help`, and the mdBook builds (`make docs`)."""
import os
import pathlib
import re
import shutil
import subprocess

import pytest

from rps_testing import ROOT, bin_dir

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"```[^\n]*\n(.*?)```", re.S)
INLINE = re.compile(r"`([^`\n]+)`")
SUBCOMMANDS = {"extract", "quality", "transform", "train", "evaluate", "serve", "probe", "stream"}


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
            for m in re.finditer(r"(?:^|[\s;&|(])rps[ -](\w+)((?:\s+[^|;&]*)?)", line):
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
