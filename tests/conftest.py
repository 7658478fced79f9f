"""Shared test helpers: markers by folder."""

from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).parent


def pytest_collection_modifyitems(config, items):
    for item in items:
        parts = Path(str(item.fspath)).relative_to(HERE).parts
        if parts[0] in ("unit", "integration", "security"):
            item.add_marker(getattr(pytest.mark, parts[0]))
