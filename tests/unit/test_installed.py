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


def package_files() -> set[str]:
    """Every file of the package in the working tree (src/clusterlab/), as the wheel names it."""
    package = Path(clusterlab.__file__).parent
    return {
        str(f.relative_to(package.parent))
        for f in package.rglob("*")
        if f.is_file()
        and "_data" not in f.relative_to(package).parts
        and not any(fnmatch(part, pat) for part in f.parts for pat in NOT_SHIPPED)
    }


def test_the_wheel_is_the_tree(installed):
    """The package as the wheel carries it equals src/clusterlab/: every module, every demo
    template, the scripts (the demo templates were once left out: demos ran empty)."""
    with zipfile.ZipFile(installed.wheel) as whl:
        names = {n for n in whl.namelist() if n.startswith("clusterlab/")}
    in_wheel = {n for n in names if not n.startswith("clusterlab/_data/")}
    tree = package_files()
    assert sorted(tree - in_wheel) == [], "files of the package the wheel lacks"
    assert sorted(in_wheel - tree) == [], "files in the wheel that the tree does not have"
    templates = {n for n in tree if n.startswith("clusterlab/demos/templates/")}
    assert len(templates) >= 20


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


def test_the_installed_copy_renders_every_demo_of_a_demo_lab(installed, tmp_path):
    """`manifests` of a lab that carries the demos fills every demo folder from the templates
    the wheel carries (an installed copy once wrote empty demos/*/ folders and exited 0)."""
    lab = "meetup-host"
    out = tmp_path / "out"
    made = installed.run("manifests", "--lab", lab, "--out", str(out), cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    spec = yaml.safe_load(installed.run("spec", "--lab", lab, cwd=tmp_path).stdout)
    assert spec["demos"], f"{lab} carries demos"
    templates = Path(clusterlab.__file__).parent / "demos" / "templates"
    for demo in spec["demos"]:
        written = sorted(p.name for p in (out / "demos" / demo).iterdir())
        expected = sorted(t.name.removesuffix(".j2") for t in (templates / demo).glob("*.j2"))
        assert written, f"demos/{demo}/ is empty"
        assert written == expected, demo


def test_the_installed_copy_starts_a_lab_from_every_example(installed, tmp_path):
    """`init --from` works from every example lab (a static example keeps its machines'
    network and says what to edit), and the spec reference the new lab.yml points to is
    printed by the installed copy (a pip install has no README or docs/)."""
    examples = sorted(p.name for p in (paths.INVENTORIES).iterdir() if (p / "lab.yml").is_file())
    assert "static-sample" in examples
    for example in examples:
        made = installed.run("init", f"my-{example}", "--from", example, cwd=tmp_path)
        assert made.returncode == 0, (example, made.stderr)
        text = (tmp_path / "inventories" / f"my-{example}" / "lab.yml").read_text()
        assert "README" not in text
        assert "# Every field is explained by `clusterlab spec --reference`." in text
        checked = installed.run("spec", "--lab", f"my-{example}", cwd=tmp_path)
        assert checked.returncode == 0, (example, checked.stderr)
    static = (tmp_path / "inventories" / "my-static-sample" / "lab.yml").read_text()
    assert "are your machines' own: replace the example's values" in static
    reference = installed.run("spec", "--reference", cwd=tmp_path)
    assert reference.returncode == 0
    assert reference.stdout.startswith("# Lab spec reference\n")
    assert "| `network.cidr` |" in reference.stdout
