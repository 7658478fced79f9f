"""Where things live: the project files the tool runs, lab specs, per-lab state, caches.

The project files (playbooks, roles, ansible.cfg, the verify suites, the Vagrantfile, the
example labs) have one home, ROOT, with the checkout's layout: the checkout itself for an
editable install, or the copy a wheel carries in the package (`clusterlab/_data/`, made at
build time by setup.py). Nothing else looks for them.
"""

from __future__ import annotations

import os
from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent
BUNDLED = _PACKAGE / "_data"  # only in a built wheel; never in the checkout
ROOT = BUNDLED if BUNDLED.is_dir() else _PACKAGE.parents[1]
PLAYBOOKS = ROOT / "playbooks"
ANSIBLE_CFG = ROOT / "ansible.cfg"
TESTS_INFRA = ROOT / "tests" / "infra"
INVENTORIES = ROOT / "inventories"  # the example labs
# Files a wheel carries: setup.py copies these (whole directories) into clusterlab/_data/.
SHIPPED = (
    "ansible.cfg",
    "Vagrantfile",
    "collections",
    "inventories",
    "playbooks",
    "roles",
    "tests/infra",
)


def checkout() -> Path | None:
    """The development checkout the tool runs from, or None for an installed copy."""
    return None if ROOT == BUNDLED or not (ROOT / "pyproject.toml").is_file() else ROOT


def project_dir() -> Path:
    """The user's project: the current directory (its inventories/ and .clusterlab/)."""
    return Path.cwd()


def inventory_roots() -> list[Path]:
    """Where labs are looked up, in order: ./inventories, $CLUSTERLAB_INVENTORIES, the examples."""
    roots = [project_dir() / "inventories"]
    env = os.environ.get("CLUSTERLAB_INVENTORIES")
    if env:
        roots.append(Path(env).expanduser())
    roots.append(INVENTORIES)
    return list(dict.fromkeys(r.resolve() for r in roots))


def lab_dir(lab: str) -> Path:
    """The folder of a lab: the first inventory root that has `<lab>/lab.yml` (else the first)."""
    roots = inventory_roots()
    for r in roots:
        if (r / lab / "lab.yml").is_file():
            return r / lab
    return roots[0] / lab


def lab_spec_file(lab: str) -> Path:
    return lab_dir(lab) / "lab.yml"


def known_labs() -> list[str]:
    return sorted({p.parent.name for r in inventory_roots() for p in r.glob("*/lab.yml")})


def state_root() -> Path:
    env = os.environ.get("CLUSTERLAB_STATE")
    return Path(env).resolve() if env else project_dir() / ".clusterlab"


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
