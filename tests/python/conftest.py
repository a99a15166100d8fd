"""Shared fixtures: a pipeline run on the bundled sample."""
import pytest

from rps_testing import run_pipeline


@pytest.fixture(scope="session")
def pipeline(tmp_path_factory):
    """The whole pipeline on the bundled sample, in a temporary project folder."""
    return run_pipeline(tmp_path_factory.mktemp("project"))
