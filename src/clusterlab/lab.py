"""A lab as the machine knows it: what `clusterlab labs` and `status --json` report."""

from __future__ import annotations

import contextlib
import fcntl
from pathlib import Path

from clusterlab import procs, registry, serve


def _nodes(state: Path, e: dict) -> tuple[int, int]:
    """(running, total) nodes of a recorded lab, read from its state dir."""
    nodes = sorted(p for p in (state / "nodes").glob("*") if p.is_dir())
    if e.get("provider") != "local":
        return 0, len(nodes)
    machine = (e.get("names") or {}).get("machine", "")
    running = 0
    for nd in nodes:
        with contextlib.suppress(OSError, ValueError):
            pid = int((nd / "nspawn.pid").read_text())
            argv = procs.cmdline(pid)
            if procs.alive(pid) and f"--machine={machine}-{nd.name}" in argv:
                running += 1
    return running, len(nodes)


def busy(name: str) -> str:
    """The holder of the lab's lock ('PID N (command)'), or '' when none holds it."""
    path = registry.lock_path(name)
    if not path.exists():
        return ""
    with path.open("a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return registry.holder(name)
    return ""


def summary(name: str, e: dict | None, state: Path | None = None) -> dict:
    """One lab: name, provider, state dir and directory, network, nodes, stages, bundle."""
    e = e or {}
    state = Path(e["state_dir"]) if e.get("state_dir") else state or Path()
    running, total = _nodes(state, e)
    served = sorted(set(serve.processes(state).values())) if state.exists() else []
    return {
        "name": name,
        "provider": e.get("provider", ""),
        "state_dir": str(state),
        "directory": str(state.parent.parent),
        "recorded": bool(e),
        "network": e.get("cidr") or "",
        "objects": e.get("names") or {},
        "nodes_running": running,
        "nodes_total": total,
        "stages_done": sorted(p.stem for p in (state / "stages").glob("*.done")),
        "bundle_served": ",".join(served),
        "busy": busy(name),
    }
