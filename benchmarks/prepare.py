"""Benchmark the prepare stage on fresh 3-node local labs (root needed; on a shared machine
serialise it with the other runs that make labs, as below).

Two configurations, each on its own fresh lab, measured in the same run:

- project:  the project's ansible.cfg and the prepare fast path (one check per node confirms a
            converged node; the full role tasks run only where something differs);
- baseline: the same playbooks with Ansible's defaults (a config file that only says where the
            roles and collections are: no pipelining, forks 5, implicit fact gathering) and the
            fast path off (`clusterlab_prepare_fast_path: false` in the lab's group_vars), so
            every role task runs every time, as prepare did before the fast path.

For each: the first prepare on fresh nodes (and, within it, the time of the package tasks:
download + install), a re-run with nothing to do (must report changed=0; median of --runs),
and a no-op `up --until prepare` of the prepared lab (provision check + prepare + the nodes
verify layer; median of --runs). On the project's lab also a re-run with the fast path off
(`-e clusterlab_prepare_fast_path=false`: the project's ansible.cfg alone). SSH calls are
counted by an ssh_executable that counts its runs. Then the per-task profile of the
project's first run and re-run (where the time goes).

    flock /run/clusterlab-tests.lock python benchmarks/prepare.py [--runs 3]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import statistics
import subprocess
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import yaml

from clusterlab import ansible, commands, paths, progress
from clusterlab.providers.local import LocalProvider
from clusterlab.spec import normalize

TARGETS = {"first": 30.0, "re-run": 10.0, "no-op up": 10.0}
PACKAGE_TASK = "packages"  # a task whose name says so installs packages (download + install)
CONFIGS = {"project": 140, "baseline": 141}  # configuration -> the third octet of its lab's /24


def lab_spec(config: str, inventories: Path) -> dict:
    raw = {
        "name": f"spdb{config[0]}",
        "provider": "local",
        "os": "debian12",
        "network": {"cidr": f"10.213.{CONFIGS[config]}.0/24"},
        "nodes": {"count": 3, "disks": [{"size": "10G"}]},
    }
    lab = inventories / raw["name"]
    (lab / "group_vars").mkdir(parents=True, exist_ok=True)
    (lab / "lab.yml").write_text(yaml.safe_dump(raw))
    fast = {"clusterlab_prepare_fast_path": config == "project"}
    (lab / "group_vars" / "all.yml").write_text(yaml.safe_dump(fast))
    return normalize(raw)


def config_env(config: str, tmp: Path) -> dict[str, str]:
    env = ansible.env()
    if config == "baseline":
        cfg = tmp / "ansible-defaults.cfg"
        cfg.write_text(
            "[defaults]\n"
            f"roles_path = {':'.join(str(p) for p in sorted((paths.ROOT / 'roles').iterdir()))}\n"
            f"collections_path = {paths.ROOT / 'collections'}:~/.ansible/collections\n"
        )
        env["ANSIBLE_CONFIG"] = str(cfg)
    return env


def task_times(events: Path) -> dict[str, float]:
    """Seconds per task (start to the next task's start), from our callback's events."""
    out: dict[str, float] = defaultdict(float)
    current, since = None, 0.0
    for line in events.read_text().splitlines():
        ev = json.loads(line)
        if ev["event"] in ("task", "handler", "stats", "play"):
            if current is not None:
                out[current] += ev["t"] - since
            current = ev.get("name") if ev["event"] in ("task", "handler") else None
            since = ev["t"]
    return dict(out)


def ssh_counter(tmp: Path) -> tuple[Path, Path]:
    """An ssh that counts its calls: Ansible's ssh_executable for the benchmark's runs."""
    count, wrapper = tmp / "ssh-calls", tmp / "ssh-counting"
    wrapper.write_text(f'#!/bin/sh\necho >> {count}\nexec ssh "$@"\n')
    wrapper.chmod(0o755)
    return wrapper, count


def run_prepare(inv: Path, env: dict[str, str], events: Path, *extra: str) -> dict:
    evenv = ansible.events_env(events)
    if env["ANSIBLE_CONFIG"] != str(paths.ANSIBLE_CFG):  # baseline: our events callback only
        evenv["ANSIBLE_CALLBACKS_ENABLED"] = progress.CALLBACK
    wrapper, count = ssh_counter(events.parent)
    evenv["ANSIBLE_SSH_EXECUTABLE"] = str(wrapper)
    count.write_text("")
    events.write_text("")
    start = time.monotonic()
    proc = subprocess.run(
        [
            ansible.bin_path("ansible-playbook"),
            "-i",
            str(inv),
            str(paths.PLAYBOOKS / "prepare.yml"),
            *extra,
        ],
        env={**env, **evenv},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
    )
    took = time.monotonic() - start
    if proc.returncode != 0:
        raise SystemExit(f"prepare failed:\n{proc.stdout[-4000:]}")
    tasks = task_times(events)
    return {
        "seconds": took,
        "changed": sum(h["changed"] for h in ansible.recap(proc.stdout).values()),
        "packages": sum(s for name, s in tasks.items() if PACKAGE_TASK in name.lower()),
        "tasks": tasks,
        "ssh calls": len(count.read_text().splitlines()),
    }


def noop_up(spec: dict, prov: LocalProvider, env: dict[str, str]) -> float:
    """`up --until prepare` in this process, with the configuration's Ansible environment."""
    saved = ansible.env
    ansible.env = lambda: dict(env)  # the stage and verify read their environment from here
    try:
        start = time.monotonic()
        with contextlib.redirect_stdout(io.StringIO()):
            commands._up(spec, prov, "prepare")
        return time.monotonic() - start
    finally:
        ansible.env = saved


def measure(config: str, tmp: Path, runs: int) -> dict:
    spec = lab_spec(config, tmp / "inventories")
    env = config_env(config, tmp)
    prov = LocalProvider(spec)
    events = tmp / f"{config}.events.jsonl"
    try:
        prov.create()
        inv = prov.state / "hosts.yml"
        first = run_prepare(inv, env, events)
        reruns = [run_prepare(inv, env, events) for _ in range(runs)]
        noops = [noop_up(spec, prov, env) for _ in range(runs)]
        full = [  # the same lab and configuration, the fast path off: every task runs
            run_prepare(inv, env, events, "-e", "clusterlab_prepare_fast_path=false")
            for _ in range(runs if config == "project" else 0)
        ]
        timings = json.loads((prov.state / "timings.json").read_text())
        return {
            "first": first["seconds"],
            "packages": first["packages"],
            "first tasks": first["tasks"],
            "first ssh calls": first["ssh calls"],
            "re-run": statistics.median(r["seconds"] for r in reruns),
            "re-run changes": max(r["changed"] for r in reruns),
            "re-run tasks": reruns[-1]["tasks"],
            "re-run ssh calls": reruns[-1]["ssh calls"],
            "no-op up": statistics.median(noops),
            "re-run, fast path off": statistics.median(r["seconds"] for r in full)
            if full
            else None,
            "no-op parts": {k: timings.get(k) for k in ("provision", "prepare", "verify-nodes")},
        }
    finally:
        prov.destroy()


def profile(title: str, tasks: dict[str, float], top: int) -> None:
    print(f"\n{title} (total {sum(tasks.values()):.1f} s, {len(tasks)} tasks)")
    for name, secs in sorted(tasks.items(), key=lambda kv: -kv[1])[:top]:
        print(f"  {secs:6.2f} s  {name}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3, help="re-runs and no-op ups per configuration")
    ap.add_argument("--top", type=int, default=12, help="tasks shown per profile")
    ap.add_argument("--only", choices=list(CONFIGS), help="measure one configuration")
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root: the local provider creates bridges, mounts and loop devices")
    with tempfile.TemporaryDirectory(prefix="clusterlab-bench-") as tmpdir:
        tmp = Path(tmpdir)
        os.environ["CLUSTERLAB_STATE"] = str(tmp / "state")
        os.environ["CLUSTERLAB_INVENTORIES"] = str(tmp / "inventories")
        res = {c: measure(c, tmp, args.runs) for c in CONFIGS if args.only in (None, c)}
    cols = list(res)
    print(f"\n{'prepare, 3 fresh nodes':<26}" + "".join(f"{c:>10}" for c in cols), end="")
    print(f"{'ratio':>8}{'target':>9}" if len(cols) == 2 else "")
    for key in ("first", "packages", "re-run", "no-op up"):
        vals = [res[c][key] for c in cols]
        line = f"{key:<26}" + "".join(f"{v:>9.1f}s" for v in vals)
        if len(cols) == 2:
            line += f"{vals[1] / vals[0]:>7.2f}x"
        if key in TARGETS:
            ok = "ok" if vals[0] <= TARGETS[key] else "MISSED"
            line += f"{TARGETS[key]:>8.1f}s  {ok}"
        print(line)
    off = res[cols[0]]["re-run, fast path off"]
    if off:
        print(f"{'re-run, fast path off':<26}{off:>9.1f}s   ({cols[0]} configuration, same lab)")
    for key in ("re-run changes", "first ssh calls", "re-run ssh calls"):
        print(f"{key:<26}" + "".join(f"{res[c][key]:>10}" for c in cols))
    for c in cols:
        parts = ", ".join(f"{k} {v:.1f} s" for k, v in res[c]["no-op parts"].items() if v)
        print(f"no-op up parts ({c}): {parts}")
    main_cfg = cols[0]
    profile(f"{main_cfg}: first prepare, per task", res[main_cfg]["first tasks"], args.top)
    profile(f"{main_cfg}: re-run, per task", res[main_cfg]["re-run tasks"], args.top)
    if res[main_cfg]["re-run changes"]:
        raise SystemExit("a re-run reported changes: prepare is not idempotent")


if __name__ == "__main__":
    main()
