"""Benchmark the local provider's lifecycle on a 3-node lab (root needed).

Medians over several runs of: cold `up` (empty rootfs cache: includes debootstrap), warm
`up` (cached rootfs, nothing else), no-op `up` (everything running), `down`; and memory
(PSS) per idle node. Prints a table.

    python benchmarks/lab_lifecycle.py [--runs 5] [--cold-runs 1]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from clusterlab.providers.local import LocalProvider
from clusterlab.spec import normalize

TARGETS = {"cold up": 90.0, "warm up": 10.0, "no-op up": 2.0, "down": 3.0}


def spec(name: str) -> dict:
    return normalize(
        {
            "name": name,
            "provider": "local",
            "os": "debian12",
            "network": {"cidr": "10.213.250.0/24"},
            "nodes": {"count": 3, "disks": [{"size": "10G"}]},
        }
    )


def timed(fn) -> float:
    start = time.monotonic()
    fn()
    return time.monotonic() - start


def pss_mib(prov: LocalProvider, node: str) -> float:
    total = 0
    for pid in prov._procs(prov._node_cgroups().get(node, [])):
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5, help="warm/no-op/down runs")
    ap.add_argument("--cold-runs", type=int, default=1, help="cold runs (each ~1 min)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root: the local provider creates bridges, mounts and loop devices")

    results: dict[str, list[float]] = {k: [] for k in TARGETS}
    mem: list[float] = []
    with tempfile.TemporaryDirectory(prefix="clusterlab-bench-") as tmp:
        os.environ["CLUSTERLAB_STATE"] = str(Path(tmp) / "state")
        prov = LocalProvider(spec("bench"))
        try:
            for i in range(args.cold_runs):
                os.environ["CLUSTERLAB_CACHE"] = str(Path(tmp) / f"cold-cache-{i}")
                results["cold up"].append(timed(prov.create))
                prov.destroy()
            os.environ.pop("CLUSTERLAB_CACHE", None)
            for _ in range(args.runs):
                results["warm up"].append(timed(prov.create))
                results["no-op up"].append(timed(prov.create))
                time.sleep(3)  # let the nodes settle to idle
                mem += [pss_mib(prov, n["name"]) for n in prov.spec["nodes"]]
                results["down"].append(timed(prov.destroy))
        finally:
            prov.destroy()

    print(f"{'measure':<22}{'median':>10}{'target':>10}  runs")
    for key, vals in results.items():
        if vals:
            med = statistics.median(vals)
            ok = "ok" if med <= TARGETS[key] else "MISSED"
            print(f"{key:<22}{med:>9.2f}s{TARGETS[key]:>9.1f}s  {len(vals)}  {ok}")
    if mem:
        med = statistics.median(mem)
        print(
            f"{'PSS per idle node':<22}{med:>8.1f}MiB{32:>8}MiB  {len(mem)}  {'ok' if med <= 32 else 'MISSED'}"
        )


if __name__ == "__main__":
    main()
