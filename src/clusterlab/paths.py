"""Where things live: the checkout, lab specs, per-lab state, caches."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the checkout (src layout, editable install)
INVENTORIES = Path(os.environ.get("CLUSTERLAB_INVENTORIES", ROOT / "inventories")).resolve()
PLAYBOOKS = ROOT / "playbooks"
ANSIBLE_CFG = ROOT / "ansible.cfg"
TESTS_INFRA = ROOT / "tests" / "infra"


def lab_spec_file(lab: str) -> Path:
    return INVENTORIES / lab / "lab.yml"


def state_root() -> Path:
    env = os.environ.get("CLUSTERLAB_STATE")
    return Path(env).resolve() if env else ROOT / ".clusterlab"


def state_dir(lab: str) -> Path:
    return state_root() / lab


def cache_root() -> Path:
    env = os.environ.get("CLUSTERLAB_CACHE")
    return Path(env).resolve() if env else Path.home() / ".cache" / "clusterlab"


def download_cache(spec: dict) -> Path:
    """The controller's download cache of a lab (the spec's artifacts.cache_dir)."""
    return Path(os.path.expanduser(spec["artifacts"]["cache_dir"]))


def cached_download(spec: dict, name: str, version: str, filename: str) -> Path:
    """Where the download mechanism keeps one file: <cache>/<name>/<version>/<filename>."""
    return download_cache(spec) / name / version / filename
