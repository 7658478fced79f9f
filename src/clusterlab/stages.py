"""Pipeline stages after provisioning: prepare (Ansible) and verify (testinfra), with logs and timings."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from clusterlab import ansible, become, paths, ui
from clusterlab.providers import ProviderError

# verify layer -> its testinfra module under tests/infra/, or None while its stage is not built
LAYERS = {
    "nodes": "test_nodes.py",
    "kubernetes": None,
    "ceph": None,
    "demos": None,
}


def inventory_file(spec: dict) -> Path:
    inv = paths.state_dir(spec["name"]) / "hosts.yml"
    if not inv.exists():
        raise ProviderError(
            f"lab {spec['name']} is not up (no {inv}); run `inv up --lab {spec['name']}`"
        )
    return inv


def record_timing(spec: dict, stage: str, seconds: float) -> None:
    path = paths.state_dir(spec["name"]) / "timings.json"
    data = json.loads(path.read_text()) if path.exists() else {}
    data[stage] = round(seconds, 2)
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def run_playbook_stage(
    spec: dict, stage: str, playbook: str, extra_vars: dict | None = None
) -> dict:
    """Run one playbook stage with a progress line, its log and its timing."""
    inv = inventory_file(spec)
    log = paths.state_dir(spec["name"]) / "logs" / f"{stage}.log"
    start = time.monotonic()
    password = (
        become.for_spec(spec, inv.parent / "ssh_config") if spec["provider"] == "static" else None
    )
    with ui.stage(f"{stage} (full log: {log})"):
        result = ansible.run_playbook(
            paths.PLAYBOOKS / playbook, inv, log, extra_vars=extra_vars, become_password=password
        )
        changed = sum(h["changed"] for h in result.values())
        ui.info(f"    {len(result)} hosts, {changed} changes")
    record_timing(spec, stage, time.monotonic() - start)
    return result


def prepare(spec: dict) -> dict:
    return run_playbook_stage(spec, "prepare", "prepare.yml")


def reset(spec: dict) -> dict:
    """Run the reset playbook (already confirmed by the caller)."""
    return run_playbook_stage(spec, "reset", "reset.yml", extra_vars={"reset_confirmation": "yes"})


def verify(spec: dict, layers: list[str] | None = None) -> None:
    """Run the testinfra layers; a layer whose stage is not built is reported as skipped."""
    inv = inventory_file(spec)
    state = paths.state_dir(spec["name"])
    wanted = layers or list(LAYERS)
    unknown = [x for x in wanted if x not in LAYERS]
    if unknown:
        raise ProviderError(
            f"unknown verify layer {', '.join(unknown)} (layers: {', '.join(LAYERS)})"
        )
    for layer in wanted:
        module = LAYERS[layer]
        if module is None:
            ui.info(f"--  verify {layer}: skipped (its stage is not built yet)")
            continue
        report = state / "reports" / f"verify-{layer}.xml"
        report.parent.mkdir(parents=True, exist_ok=True)
        cmd = [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "-q",
            "-rs",
            str(paths.TESTS_INFRA / module),
            "--hosts=ansible://all",
            f"--ansible-inventory={inv}",
            f"--junitxml={report}",
            *(
                ["--sudo"]
                if any(n.get("user") not in (None, "root") for n in spec["nodes"])
                else []
            ),
            "--rootdir",
            str(paths.TESTS_INFRA),
            "-c",
            str(paths.TESTS_INFRA / "pytest.ini"),
        ]
        start = time.monotonic()
        with ui.stage(f"verify {layer}"):
            rc = subprocess.call(cmd, env=ansible.env(), stdin=subprocess.DEVNULL)
            record_timing(spec, f"verify-{layer}", time.monotonic() - start)
            if rc != 0:
                raise ProviderError(f"verify {layer} failed (report: {report})")
