"""pytest fixture `mariadb`: a started MariaDB (session scope).

Not Linux or not root: skip with the reason; under CI=true: fail.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import NoReturn

import pytest

from .server import MariaDB, MariaDBError, unavailable_reason


def _not_here(reason: str) -> NoReturn:
    if os.environ.get("CI", "").strip().lower() == "true":
        pytest.fail(f"CI=true but the MariaDB test server cannot run: {reason}", pytrace=False)
    pytest.skip(f"MariaDB test server not available: {reason}")


@pytest.fixture(scope="session")
def mariadb() -> Iterator[MariaDB]:
    reason = unavailable_reason()
    if reason:
        _not_here(reason)
    db = MariaDB()
    try:
        db.start()
    except MariaDBError as exc:
        pytest.fail(f"the MariaDB test server did not start: {exc}", pytrace=False)
    try:
        yield db
    finally:
        db.stop()
