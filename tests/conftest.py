"""Shared fixtures."""

from __future__ import annotations

import pytest

from asterisk_miitel.config import Config

from .support import lab_config


@pytest.fixture
def config() -> Config:
    return lab_config()
