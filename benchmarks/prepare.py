"""Benchmark the prepare stage on fresh 3-node local labs (root needed).

For each Ansible configuration — the project's ansible.cfg, and Ansible's defaults (no
config file) — a fresh lab is created, prepare runs once (first run) and again (no-op
re-run, which must report changed=0). Prints both timings per configuration and the ratio.

    python benchmarks/prepare.py
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from pathlib import Path

from clusterlab import ansible, paths, sshconf
from clusterlab.providers.local import LocalProvider
from clusterlab.spec import normalize

TARGETS = {"first": 18.0, "re-run": 6.0}


def spec() -> dict:
    return normalize(
        {
            "name": "benchprep",
            "provider": "local",
            "os": "debian12",
            "network": {"cidr": "10.213.251.0/24"},
            "nodes": {"count": 3, "disks": [{"size": "10G"}]},
        }
    )


def run_prepare(inv: Path, env: dict[str, str]) -> tuple[float, int]:
    start = time.monotonic()
    proc = subprocess.run(
        [
            ansible.bin_path("ansible-playbook"),
            "-i",
            str(inv),
            str(paths.PLAYBOOKS / "prepare.yml"),
        ],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
    )
    took = time.monotonic() - start
    if proc.returncode != 0:
        raise SystemExit(f"prepare failed:\n{proc.stdout[-3000:]}")
    changed = sum(h["changed"] for h in ansible.recap(proc.stdout).values())
    return took, changed


def measure(env: dict[str, str]) -> dict[str, float]:
    prov = LocalProvider(spec())
    try:
        prov.create()
        inv = prov.state / "hosts.yml"
        first, _ = run_prepare(inv, env)
        rerun, changed = run_prepare(inv, env)
        return {"first": first, "re-run": rerun, "re-run changes": changed}
    finally:
        sshconf.kill_masters(prov.state)
        prov.destroy()


def main() -> None:
    if os.geteuid() != 0:
        raise SystemExit("run as root: the local provider creates bridges, mounts and loop devices")
    with tempfile.TemporaryDirectory(prefix="clusterlab-bench-") as tmp:
        os.environ["CLUSTERLAB_STATE"] = str(Path(tmp) / "state")
        ours = measure(ansible.env())
        defaults_env = ansible.env()
        defaults_env["ANSIBLE_CONFIG"] = str(Path(tmp) / "empty.cfg")  # Ansible's defaults
        Path(defaults_env["ANSIBLE_CONFIG"]).write_text(
            "[defaults]\nroles_path = " + str(paths.ROOT / "roles") + "\n"
        )
        plain = measure(defaults_env)
    print(f"{'prepare, 3 fresh nodes':<24}{'project':>10}{'defaults':>10}{'ratio':>8}{'target':>9}")
    for key in ("first", "re-run"):
        ok = "ok" if ours[key] <= TARGETS[key] else "MISSED"
        print(
            f"{key:<24}{ours[key]:>9.1f}s{plain[key]:>9.1f}s{plain[key] / ours[key]:>7.2f}x"
            f"{TARGETS[key]:>8.1f}s  {ok}"
        )
    print(
        f"{'changes on re-run':<24}{ours['re-run changes']:>10}{plain['re-run changes']:>10}  (must be 0)"
    )


if __name__ == "__main__":
    main()
