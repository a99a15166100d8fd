"""docker/Dockerfile and docker/mlflow.Dockerfile: hadolint clean, and the image they describe."""

import re

import pytest

from ship_helpers import DOCKER, ROOT, TARGET, run, tool

DOCKERFILES = [DOCKER / "Dockerfile", DOCKER / "mlflow.Dockerfile"]


def stages(text: str) -> list[tuple[str, str | None, list[str]]]:
    """(base, name, instructions) per stage, with continuation lines joined and comments dropped."""
    joined = re.sub(r"\\\n\s*", " ", "\n".join(l for l in text.splitlines() if not l.lstrip().startswith("#")))
    out = []
    for line in joined.splitlines():
        line = line.strip()
        if not line:
            continue
        m = re.match(r"FROM\s+(\S+)(?:\s+AS\s+(\S+))?$", line, re.I)
        if m:
            out.append((m.group(1), m.group(2), []))
        elif out:
            out[-1][2].append(line)
    return out


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint_clean(dockerfile):
    # Failure threshold "style": any finding at all fails; ignores must be inline and justified.
    out = run(tool("hadolint"), "--no-color", "--failure-threshold", "style", dockerfile)
    assert out.returncode == 0, f"hadolint {dockerfile.name}:\n{out.stdout}{out.stderr}"


def test_hadolint_catches_a_bad_dockerfile(tmp_path):
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM debian\nRUN apt-get update && apt-get install -y curl\nUSER root\n")
    out = run(tool("hadolint"), "--no-color", "--failure-threshold", "style", bad)
    assert out.returncode != 0
    for rule in ("DL3006", "DL3008", "DL3002"):
        assert rule in out.stdout


def test_every_ignored_rule_is_justified():
    for dockerfile in DOCKERFILES:
        lines = dockerfile.read_text().splitlines()
        for i, line in enumerate(lines):
            if "hadolint ignore" in line:
                assert i > 0 and lines[i - 1].lstrip().startswith("#") and "hadolint" not in lines[i - 1], (
                    f"{dockerfile.name}:{i + 1}: an ignored rule needs a comment line above saying why"
                )


def test_image_stage_is_scratch_non_root_with_rps_entrypoint():
    text = (DOCKER / "Dockerfile").read_text()
    st = stages(text)
    base, name, body = st[-1]
    assert (base, name) == ("scratch", "rps"), "the last (default) stage is the image: FROM scratch AS rps"
    users = [l.split()[1] for l in body if l.upper().startswith("USER ")]
    assert users and re.fullmatch(r"[1-9][0-9]*:[1-9][0-9]*", users[-1]), f"numeric non-root USER, got {users}"
    assert 'ENTRYPOINT ["/rps"]' in body
    assert any(l.startswith("COPY --from=bin /out/ /") for l in body)
    env = " ".join(l for l in body if l.startswith("ENV "))
    assert "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt" in env
    assert "RPS_SERVE_BIND=0.0.0.0:8080" in env, "rps serve must listen beyond loopback in a container"
    assert "RPS_GIT_COMMIT=" in env, "stages tag runs with the commit (rps_cli::git_commit)"


def test_binary_source_is_a_build_arg_with_both_stages():
    text = (DOCKER / "Dockerfile").read_text()
    assert re.search(r"^ARG BIN_SOURCE=builder$", text, re.M), "the default must compile from source"
    st = {name: (base, body) for base, name, body in stages(text)}
    assert st["bin"][0] == "${BIN_SOURCE}"
    assert {"builder", "prebuilt", "bin", "airflow", "rps"} <= set(st)
    assert st["prebuilt"][0] == "scratch"
    assert st["builder"][0].startswith("docker.io/library/rust:")
    # Both sources lay out the same /out tree that the image copies.
    prebuilt = " ".join(st["prebuilt"][1])
    for path in ("/out/rps", "/out/etc/ssl/certs/ca-certificates.crt"):
        assert path in prebuilt and path in " ".join(st["builder"][1])


def test_builder_compiles_like_the_image_script():
    """The builder stage and scripts/image.sh build the binary the same way (profile, target)."""
    builder = next(body for base, name, body in stages((DOCKER / "Dockerfile").read_text()) if name == "builder")
    command = next(l for l in builder if "cargo build" in l)
    assert f"cargo build --profile dist --locked --target {TARGET} -p rps" in command
    script = (ROOT / "scripts" / "image.sh").read_text()
    assert 'profile=${RPS_IMAGE_PROFILE:-dist}' in script
    assert 'cargo build --profile "$profile" --locked --target "$target" -p rps' in script
    assert f"target={TARGET}" in script
    assert re.search(r"^\[profile\.dist\]\s*\ninherits = \"release\"", (ROOT / "Cargo.toml").read_text(), re.M)


def test_rust_toolchain_of_the_builder_is_recent_enough():
    cargo = (ROOT / "Cargo.toml").read_text()
    need = tuple(int(x) for x in re.search(r'rust-version\s*=\s*"([0-9.]+)"', cargo).group(1).split("."))
    have = re.search(r"docker\.io/library/rust:([0-9.]+)-", (DOCKER / "Dockerfile").read_text()).group(1)
    assert tuple(int(x) for x in have.split(".")) >= need


def test_rootfs_user_matches_the_image_user():
    passwd = (DOCKER / "rootfs" / "etc" / "passwd").read_text()
    group = (DOCKER / "rootfs" / "etc" / "group").read_text()
    assert re.search(r"^rps:x:65532:65532:", passwd, re.M)
    assert re.search(r"^rps:x:65532:", group, re.M)
    assert "USER 65532:65532" in (DOCKER / "Dockerfile").read_text()


def test_dockerignore_keeps_the_workspace_and_drops_the_rest():
    rules = [l.strip() for l in (ROOT / ".dockerignore").read_text().splitlines() if l.strip() and not l.startswith("#")]
    assert rules[0] == "*", "exclude everything, then let the workspace back in"
    for keep in ("!Cargo.toml", "!Cargo.lock", "!crates/", "!tests/pipeline/", "!docker/rootfs/"):
        assert keep in rules
    # Every workspace member must be let back in, or `cargo build` in the builder stage fails.
    members = re.search(r"members\s*=\s*\[([^\]]*)\]", (ROOT / "Cargo.toml").read_text()).group(1)
    for member in re.findall(r'"([^"]+)"', members):
        top = member.split("/*")[0].rstrip("/") + "/"
        assert any(r == f"!{top}" or top.startswith(r[1:]) for r in rules if r.startswith("!")), member
