"""Helpers of the verify suites: the lab's inventory, and kubectl on the controller with the
lab's kubeconfig and cached kubectl (both from the inventory's all.vars)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from clusterlab.yamltags import from_ansible_json, plain  # also registers !unsafe


def read_inventory(path: str | Path) -> dict:
    """vars (all.vars), hosts (sorted names), hostvars (name -> vars), groups (name -> sorted
    hosts) and path of the inventory the suite runs against."""
    inv = plain(yaml.safe_load(Path(path).read_text()))["all"]
    groups = {g: sorted((v or {}).get("hosts") or {}) for g, v in inv["children"].items()}
    return {
        "path": Path(path),
        "vars": inv["vars"],
        "hosts": sorted(inv["hosts"]),
        "hostvars": {h: v or {} for h, v in inv["hosts"].items()},
        "groups": groups,
    }


def kubectl(
    lab: dict, *args: str, check: bool = True, stdin: str | None = None, timeout: int = 300
) -> str:
    """kubectl ARGS against the lab; its stdout, or the test fails with kubectl's message."""
    v = lab["vars"]
    res = subprocess.run(
        [v["clusterlab_kubectl"], "--kubeconfig", v["clusterlab_kubeconfig"], *args],
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
    )
    if check and res.returncode != 0:
        pytest.fail(f"kubectl {' '.join(args)} failed: {res.stderr.strip()}")
    return res.stdout


def host_vars(host) -> dict:
    """The host's variables as testinfra's Ansible backend gives them, unsafe values plain."""
    return from_ansible_json(host.ansible.get_variables())


# Where a node keeps the tools clusterlab installs: /usr/local/bin, Flatcar's /opt/bin (its
# /usr is read-only). testinfra runs commands under sudo, whose secure_path on the RHEL
# family is /sbin:/bin:/usr/sbin:/usr/bin, so a tool there is not found by name.
NODE_BIN_DIRS = ("/usr/local/bin", "/opt/bin", "/usr/bin", "/usr/sbin")


def node_command(host, *names: str) -> str:
    """The path of the first of `names` the node has, on PATH or in NODE_BIN_DIRS."""
    for name in names:
        try:
            return host.find_command(name, extrapaths=NODE_BIN_DIRS)
        except ValueError:
            continue
    raise AssertionError(f"{host.backend.hostname}: none of {', '.join(names)} found")
