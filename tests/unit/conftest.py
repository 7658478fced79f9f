"""Unit tests see a machine without labs: their own empty record of labs and lock directory,
so a lab living on this machine (the README's default lab, left up while the suite runs) is
never the one a unit test's command finds. Integration tests use the real record."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _own_lab_record(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("CLUSTERLAB_RECORD_DIR", str(tmp_path_factory.mktemp("lab-record")))
