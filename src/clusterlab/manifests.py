"""`clusterlab manifests`: render what a lab hands to kubeadm (and later stages apply) on the
controller, with the stages' own roles and templates (playbooks/manifests.yml), touching no node.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import yaml

from clusterlab import ansible, inventory, paths
from clusterlab.demos import DEMOS, runner
from clusterlab.demos.base import render_manifests
from clusterlab.providers import get_provider

PLAYBOOK = paths.PLAYBOOKS / "manifests.yml"
MISSING = "MISSING.txt"  # one line per folder that could not be rendered, and why


class ManifestsError(ansible.AnsibleError):
    """The manifests playbook failed; the message has the failed tasks (tasks print it)."""


def lab_inventory(spec: dict) -> dict:
    """The generated inventory once the lab is up, else the planned one (nothing created)."""
    generated = paths.state_dir(spec["name"]) / "hosts.yml"
    if generated.is_file():
        return yaml.safe_load(generated.read_text())
    return inventory.render(spec, get_provider(spec).planned_connections())


def render(spec: dict, out_dir: Path, tags: Sequence[str] = ()) -> list[Path]:
    """Write the lab's manifests under out_dir; return the files written, sorted.

    tags: only these plays of playbooks/manifests.yml (kubeadm, cni, ...); default all.

    Every folder (kubeadm/, cni/, ...) or file the playbook writes replaces the one of that name
    in out_dir, so a node or manifest that is gone leaves no stale file; nothing else is touched.
    """
    out_dir = Path(out_dir).resolve()
    with tempfile.TemporaryDirectory(prefix="clusterlab-manifests-") as tmp:
        work = Path(tmp)
        hosts = work / "hosts.yml"
        planned = lab_inventory(spec)
        hosts.write_text(yaml.safe_dump(planned, sort_keys=False))
        user_vars = paths.lab_dir(spec["name"]) / "group_vars"
        if user_vars.is_dir():  # the user's overrides apply here as in the stages
            (work / "group_vars").symlink_to(user_vars.resolve())
        rendered = work / "out"
        try:
            ansible.run_playbook(
                PLAYBOOK,
                hosts,
                work / "manifests.log",
                extra_args=["--tags", ",".join(tags)] if tags else None,
                extra_vars={
                    "manifests_out_dir": str(rendered),
                    "ansible_connection": "local",
                    "ansible_python_interpreter": sys.executable,
                },
            )
        except ansible.AnsibleError as exc:
            detail = str(exc).partition("\n")[2] or str(exc)
            raise ManifestsError(
                f"rendering the manifests of lab {spec['name']} failed:\n{detail}"
            ) from exc
        if not tags or "demos" in tags:
            render_demos(spec, planned, rendered)
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / MISSING).unlink(missing_ok=True)  # a previous run's gaps are not this run's
        written: list[Path] = []
        for entry in sorted(rendered.iterdir()):
            target = out_dir / entry.name
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            elif target.exists() or target.is_symlink():
                target.unlink()
            shutil.move(str(entry), target)
            written += (
                [target] if target.is_file() else [p for p in target.rglob("*") if p.is_file()]
            )
    return sorted(written)


def render_demos(spec: dict, inv: dict, out_dir: Path) -> None:
    """demos/<name>/ for every demo the lab carries: what `inv demo` applies (one renderer,
    the same inventory). A demo not built yet is named in MISSING.txt."""
    if not spec["demos"]:
        return
    ctx = runner.context(inv)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in spec["demos"]:
        if name not in DEMOS:
            with (out_dir / MISSING).open("a") as fh:
                fh.write(f"demos/{name}: the demo is not built yet\n")
            continue
        folder = out_dir / "demos" / name
        folder.mkdir(parents=True, exist_ok=True)
        for file, text in render_manifests(DEMOS[name], ctx).items():
            (folder / file).write_text(text)


def missing(out_dir: Path) -> list[str]:
    """What the last render could not write (e.g. a CNI manifest that cannot be downloaded)."""
    path = Path(out_dir) / MISSING
    return path.read_text().splitlines() if path.is_file() else []
