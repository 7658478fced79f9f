#!/usr/bin/python
"""node_state: compare a node with the state a role guarantees, in one module run.

Reads, never writes. Each guarantee that does not hold on the node becomes one line of
`drift` (what differs, never the file's content). A role runs it first and runs its own
tasks only on nodes with drift, so a converged node costs one round trip per role and a
drifted one is repaired by the same tasks that made it.
"""

from __future__ import annotations

import glob
import hashlib
import os
import shutil
import subprocess

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
module: node_state
short_description: Compare a node with a role's guaranteed state (read-only)
description:
  - Checks file contents and modes, blockinfile blocks, installed packages, systemd units,
    live sysctls, shell checks and files that must be absent; returns what differs.
options:
  files:
    description: Files with their exact content (or sha256) and mode.
    type: list
    elements: dict
    default: []
  blocks:
    description: Marked blocks (as blockinfile writes them) a file must hold.
    type: list
    elements: dict
    default: []
  packages:
    description: Packages that must be installed (dpkg or rpm).
    type: list
    elements: str
    default: []
  services:
    description: systemd units with the wanted active, enabled or masked state.
    type: list
    elements: dict
    default: []
  sysctls:
    description: Live kernel parameters and their values.
    type: dict
    default: {}
  commands:
    description: Shell checks (name, cmd) that must exit 0.
    type: list
    elements: dict
    default: []
  absent:
    description: Files matching glob that contain a marker, except those in keep, must not exist.
    type: list
    elements: dict
    default: []
  probe:
    description: A shell command whose output is returned as probe (rc and stdout), run last.
    type: str
author: clusterlab
"""

RETURN = r"""
drift:
  description: One line per guarantee that does not hold.
  type: list
  returned: always
probe:
  description: rc and stdout of the probe command, when given.
  type: dict
  returned: when probe is given
"""


def check_files(files: list[dict], drift: list[str]) -> None:
    for f in files:
        path = f["path"]
        try:
            with open(path, "rb") as fh:
                data = fh.read()
            mode = os.stat(path).st_mode & 0o7777
        except OSError as exc:
            drift.append(f"{path}: {exc.strerror.lower()}")
            continue
        if "content" in f and data != f["content"].encode():
            drift.append(f"{path}: content differs")
        if "sha256" in f and hashlib.sha256(data).hexdigest() != f["sha256"]:
            drift.append(f"{path}: sha256 differs")
        if f.get("mode") is not None and mode != int(str(f["mode"]), 8):
            drift.append(f"{path}: mode {mode:04o}, want {f['mode']}")


def check_blocks(blocks: list[dict], drift: list[str]) -> None:
    for b in blocks:
        marker = b.get("marker", "# {mark} ANSIBLE MANAGED BLOCK")
        block = b["block"] if b["block"].endswith("\n") or not b["block"] else b["block"] + "\n"
        want = marker.replace("{mark}", "BEGIN") + "\n" + block + marker.replace("{mark}", "END")
        try:
            with open(b["path"], encoding="utf-8") as fh:
                text = fh.read()
        except OSError as exc:
            drift.append(f"{b['path']}: {exc.strerror.lower()}")
            continue
        if want not in text:
            drift.append(f"{b['path']}: block {marker.replace('{mark} ', '')!r} differs")


def check_packages(packages: list[str], drift: list[str]) -> None:
    if not packages:
        return
    if shutil.which("dpkg-query"):
        out = subprocess.run(
            ["dpkg-query", "-W", "-f", "${Package} ${db:Status-Status}\n", *packages],
            capture_output=True,
            text=True,
            check=False,
        ).stdout
        installed = {ln.split()[0] for ln in out.splitlines() if ln.endswith(" installed")}
    elif shutil.which("rpm"):
        out = subprocess.run(
            ["rpm", "-q", "--qf", "%{NAME}\n", *packages],
            capture_output=True,
            text=True,
            check=False,
        ).stdout
        installed = {ln.strip() for ln in out.splitlines() if " " not in ln.strip()}
    else:
        drift.append("no package manager (dpkg, rpm) to ask about " + ", ".join(packages))
        return
    missing = [p for p in packages if p not in installed]
    if missing:
        drift.append("packages not installed: " + ", ".join(missing))


def check_services(services: list[dict], drift: list[str]) -> None:
    for s in services:
        out = subprocess.run(
            ["systemctl", "show", "-p", "ActiveState,UnitFileState,LoadState", s["name"]],
            capture_output=True,
            text=True,
            check=False,
        ).stdout
        props = dict(ln.split("=", 1) for ln in out.splitlines() if "=" in ln)
        active = props.get("ActiveState", "unknown")
        unit_file = props.get("UnitFileState", "")
        masked = props.get("LoadState") == "masked" or unit_file.startswith("masked")
        if "active" in s and (active == "active") != bool(s["active"]):
            drift.append(f"{s['name']}: {active}, want {'active' if s['active'] else 'inactive'}")
        if "enabled" in s and (unit_file == "enabled") != bool(s["enabled"]):
            drift.append(f"{s['name']}: {unit_file or 'no unit file'}, want enabled")
        if "masked" in s and masked != bool(s["masked"]):
            drift.append(f"{s['name']}: {'masked' if masked else 'not masked'}, want the opposite")


def check_sysctls(sysctls: dict, drift: list[str]) -> None:
    for key, want in sysctls.items():
        path = "/proc/sys/" + key.replace(".", "/")
        try:
            with open(path, encoding="utf-8") as fh:
                now = " ".join(fh.read().split())
        except OSError:
            drift.append(f"sysctl {key}: absent")
            continue
        if now != " ".join(str(want).split()):
            drift.append(f"sysctl {key} = {now}, want {want}")


def check_commands(commands: list[dict], drift: list[str]) -> None:
    for c in commands:
        rc = subprocess.run(
            ["/bin/sh", "-c", c["cmd"]], capture_output=True, check=False, timeout=60
        ).returncode
        if rc != 0:
            drift.append(f"{c['name']}: not so (exit {rc})")


def check_absent(absent: list[dict], drift: list[str]) -> None:
    for a in absent:
        keep = set(a.get("keep") or [])
        for path in sorted(glob.glob(a["glob"])):
            if path in keep:
                continue
            try:
                with open(path, encoding="utf-8", errors="replace") as fh:
                    marked = a.get("contains", "") in fh.read()
            except OSError:
                continue
            if marked:
                drift.append(f"{path}: present, want absent")


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "files": {"type": "list", "elements": "dict", "default": []},
            "blocks": {"type": "list", "elements": "dict", "default": []},
            "packages": {"type": "list", "elements": "str", "default": []},
            "services": {"type": "list", "elements": "dict", "default": []},
            "sysctls": {"type": "dict", "default": {}},
            "commands": {"type": "list", "elements": "dict", "default": []},
            "absent": {"type": "list", "elements": "dict", "default": []},
            "probe": {"type": "str"},
        },
        supports_check_mode=True,
    )
    p = module.params
    drift: list[str] = []
    check_files(p["files"], drift)
    check_blocks(p["blocks"], drift)
    check_packages(p["packages"], drift)
    check_services(p["services"], drift)
    check_sysctls(p["sysctls"], drift)
    check_commands(p["commands"], drift)
    check_absent(p["absent"], drift)
    result: dict = {"changed": False, "drift": drift}
    if p["probe"]:
        proc = subprocess.run(
            ["/bin/bash", "-c", p["probe"]], capture_output=True, text=True, check=False
        )
        result["probe"] = {"rc": proc.returncode, "stdout": proc.stdout, "stderr": proc.stderr}
    module.exit_json(**result)


if __name__ == "__main__":
    main()
