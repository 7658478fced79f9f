"""The wheel carries what the tool runs; the installed copy works from an empty directory."""

from __future__ import annotations

import zipfile
from fnmatch import fnmatch
from pathlib import Path

import pytest
import yaml

import clusterlab
from clusterlab import paths
from installed import Installed, install

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Installed:
    return install(tmp_path_factory.mktemp("installed"))


# What setup.py leaves out of the copy (caches and tool state).
NOT_SHIPPED = ("__pycache__", "*.pyc", ".pytest_cache", ".vagrant", ".ansible")


def shipped_files() -> set[str]:
    """Every file of the shipped project files in the working tree."""
    out = set()
    for name in paths.SHIPPED:
        src = paths.ROOT / name
        files = [src] if src.is_file() else [f for f in src.rglob("*") if f.is_file()]
        for f in files:
            rel = f.relative_to(paths.ROOT)
            if not any(fnmatch(part, pat) for part in rel.parts for pat in NOT_SHIPPED):
                out.add(str(rel))
    return out


def test_the_wheel_carries_every_shipped_file(installed):
    prefix = "clusterlab/_data/"
    with zipfile.ZipFile(installed.wheel) as whl:
        names = whl.namelist()
        data = {n.removeprefix(prefix) for n in names if n.startswith(prefix)}
        disk_tool = whl.getinfo(prefix + "roles/common/disk_tool/files/clusterlab-disk")
    assert data == shipped_files()
    for must in ("ansible.cfg", "Vagrantfile", "playbooks/site.yml", "tests/infra/pytest.ini"):
        assert must in data
    assert "inventories/default/lab.yml" in data
    assert (disk_tool.external_attr >> 16) & 0o111, "the disk tool stays executable"
    assert "clusterlab/ansible_callbacks/clusterlab_events.py" in names
    assert not [n for n in names if "__pycache__" in n or n.startswith("tests/")]


def test_the_installed_copy_works_from_an_empty_directory(installed, tmp_path):
    cwd = tmp_path / "empty"
    cwd.mkdir()
    where = installed.python(
        "from clusterlab import paths; print(paths.ROOT); print(paths.checkout())", cwd
    ).split()
    assert Path(where[0]).is_relative_to(installed.venv), "runs its own bundled files"
    assert where[1] == "None"

    version = installed.run("--version", cwd=cwd)
    assert version.stdout.strip() == f"clusterlab {clusterlab.__version__}"

    assert installed.run("init", "mylab", cwd=cwd).returncode == 0
    lab = cwd / "inventories" / "mylab" / "lab.yml"
    assert lab.read_text().startswith("---\n# Lab mylab, made by `clusterlab init`")
    again = installed.run("init", "mylab", cwd=cwd)
    assert again.returncode == 1
    assert "exists; not overwritten" in again.stderr

    spec = installed.run("spec", "--lab", "mylab", cwd=cwd)
    assert spec.returncode == 0, spec.stderr
    assert yaml.safe_load(spec.stdout)["name"] == "mylab"

    inv = installed.run("inventory", "--lab", "mylab", cwd=cwd)
    assert inv.returncode == 0, inv.stderr
    assert sorted(yaml.safe_load(inv.stdout)["all"]["hosts"]) == ["node1", "node2", "node3"]
    assert "planned inventory" in inv.stderr

    out = tmp_path / "D"
    made = installed.run("manifests", "--lab", "mylab", "--out", str(out), cwd=cwd)
    assert made.returncode == 0, made.stderr
    listed = [Path(p) for p in made.stdout.split()]
    assert listed
    assert all(p.is_relative_to(out) and p.is_file() for p in listed)
    assert (out / "kubeadm").is_dir()

    bundled = installed.run("spec", "--lab", "default", cwd=cwd)  # the bundled example labs
    assert bundled.returncode == 0, bundled.stderr

    missing = installed.run("spec", "--lab", "nope", cwd=cwd)
    assert missing.returncode == 2
    assert "clusterlab init nope" in missing.stderr

    for task in ("lint", "test"):
        res = installed.run(task, cwd=cwd)
        assert res.returncode == 1, task
        assert "developer tasks of a clusterlab checkout" in res.stderr
        assert "Traceback" not in res.stderr
    assert sorted(p.name for p in cwd.iterdir()) == ["inventories"], "no state was needed"
