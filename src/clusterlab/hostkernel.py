"""Facts about the controller's own kernel that nodes sharing it (local provider) inherit."""

from __future__ import annotations

from pathlib import Path

CGROUP_MOUNT = Path("/sys/fs/cgroup")


def cgroup_v1() -> bool:
    """True unless /sys/fs/cgroup is the unified (v2) hierarchy; hybrid hosts count as v1."""
    return not (CGROUP_MOUNT / "cgroup.controllers").exists()
