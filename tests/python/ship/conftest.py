"""Fixtures of the shipping tests (helpers in ship_helpers.py)."""

import re

import pytest

from ship_helpers import rps_binary, run


@pytest.fixture(scope="session")
def rps_help():
    """`rps <stage> --help` of a built binary; the long flags it lists."""
    binary = rps_binary()
    if binary is None:
        pytest.fail("no built rps binary: set RPS_BIN_DIR or build it (make build); make test does both")

    def flags(*stage: str) -> set[str]:
        """`rps_help("serve")`, or a sub-command: `rps_help("stream", "consume")`."""
        out = run(binary, *stage, "--help", check=True).stdout
        return set(re.findall(r"(--[a-z][a-z0-9-]*)", out))

    return flags
