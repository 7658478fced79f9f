"""Project wiring: tasks, console script, collections, README spec reference."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest
import yaml
from ansible.galaxy.dependency_resolution.versioning import meets_requirements

from clusterlab import ansible, commands, paths
from clusterlab.spec import FIELDS, reference_markdown


def task_names(output: str) -> set[str]:
    names = set()
    for line in output.splitlines():
        m = re.match(r"^  (\S+)\s", line)
        if m:
            names.add(m.group(1))
    return names


def test_inv_list_and_clusterlab_help_list_the_same_tasks():
    inv = subprocess.run(
        [ansible.bin_path("inv"), "--list"],
        cwd=paths.ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    cl = subprocess.run(
        [sys.executable, "-m", "clusterlab", "--list"], capture_output=True, text=True, check=True
    )
    helped = subprocess.run(
        [sys.executable, "-m", "clusterlab", "--help"], capture_output=True, text=True, check=True
    )
    expected = {
        "artifacts",
        "init",
        "setup",
        "spec",
        "inventory",
        "up",
        "down",
        "status",
        "ssh",
        "prepare",
        "kubernetes",
        "rook",
        "ceph",
        "kubeconfig",
        "kubectl",
        "manifests",
        "verify",
        "reset",
        "rebuild",
        "demo",
        "lint",
        "test",
    }
    assert task_names(inv.stdout) == expected
    assert task_names(cl.stdout) == expected
    assert expected <= task_names(helped.stdout)


@pytest.mark.parametrize("task", commands.TASKS, ids=lambda t: t.name)
def test_every_flag_has_help(task):
    args = [a for a in task.get_arguments() if a.name not in ("c",)]
    for arg in args:
        assert arg.help, f"{task.name} --{arg.name} has no help text"
    if "lab" in [a.name for a in args]:
        res = subprocess.run(
            [sys.executable, "-m", "clusterlab", "--help", task.name],
            capture_output=True,
            text=True,
            check=True,
        )
        assert "--lab" in res.stdout


def test_demo_refuses_a_lab_that_does_not_carry_it_and_touches_nothing(tmp_path):
    argv = [sys.executable, "-m", "clusterlab", "demo", "storage-types", "--lab", "default"]
    env = dict(os.environ, CLUSTERLAB_STATE=str(tmp_path / "s"))
    res = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
    assert res.returncode == 1, res.stderr
    assert "lab default does not carry demo storage-types" in res.stderr
    assert not (tmp_path / "s").exists()


def test_installed_collections_satisfy_requirements():
    req = yaml.safe_load((paths.ROOT / "collections" / "requirements.yml").read_text())
    res = subprocess.run(
        [ansible.bin_path("ansible-galaxy"), "collection", "list", "--format", "json"],
        capture_output=True,
        text=True,
        env=ansible.env(),
        check=True,
    )

    installed: dict[str, str] = {}
    for colls in json.loads(res.stdout).values():
        for name, meta in colls.items():
            installed.setdefault(name, meta["version"])
    for item in req["collections"]:
        assert item["name"] in installed, f"{item['name']} is not installed"
        assert meets_requirements(installed[item["name"]], item["version"]), (
            f"{item['name']} {installed[item['name']]} does not satisfy {item['version']}"
        )


def readme_reference_fields() -> set[str]:
    text = (paths.ROOT / "README.md").read_text()
    section = text.split("## Lab spec reference", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| `([^`]+)` \|", section, re.MULTILINE))


def test_readme_spec_reference_matches_the_model():
    assert readme_reference_fields() == set(FIELDS)
    # the whole table, types, defaults and meanings included, is what the model generates
    assert reference_markdown() in (paths.ROOT / "README.md").read_text()


def test_ansible_cfg_is_used_by_absolute_path():
    env = ansible.env()
    assert env["ANSIBLE_CONFIG"] == str(paths.ANSIBLE_CFG)
    assert paths.ANSIBLE_CFG.is_absolute()
    assert paths.ANSIBLE_CFG.exists()
    res = subprocess.run(
        [ansible.bin_path("ansible-config"), "dump", "--only-changed"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert "profile_tasks" in res.stdout
    assert "DEFAULT_ROLES_PATH" in res.stdout
    conn = subprocess.run(
        [ansible.bin_path("ansible-config"), "dump", "--only-changed", "-t", "connection"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert "pipelining(" in conn.stdout
    assert "ControlPersist" in conn.stdout
