"""Session fixtures: one devstack and one Azurite for the whole run, as real processes."""

from __future__ import annotations

import pytest

from tests.support.azurite import running_azurite
from tests.support.devstack import RunningDevstack, environment, running_devstack


@pytest.fixture(scope="session")
def devstack(tmp_path_factory) -> RunningDevstack:
    """A devstack on free ports; its env file is loaded into this process for the SDKs."""
    with running_devstack(tmp_path_factory.mktemp("devstack")) as stack, environment(stack.env):
        yield stack


@pytest.fixture(scope="session")
def azurite(tmp_path_factory) -> str:
    """The `AzureWebJobsStorage` connection string of a running Azurite."""
    with running_azurite(tmp_path_factory.mktemp("azurite")) as conn:
        yield conn
