"""Shared fixtures."""

from __future__ import annotations

import pytest

from asterisk_miitel.config import Config

from .support import lab_config

# The real Asterisk lab (tests/lab): `lab` and `freepbx_lab` fixtures.
pytest_plugins = ["tests.lab.fixtures"]


@pytest.fixture
def config() -> Config:
    return lab_config()
