"""The pipeline: one ordered table of stages, each a playbook plus the verify layer that checks it.

`up --until`, `rebuild --keep-nodes`, `verify` and the README all read PIPELINE; a stage's
name appears nowhere else. Each stage run writes its log, its timing, and a marker that it
completed (so `verify` knows which layers apply, and `reset` clears the markers it undoes).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from clusterlab import (
    ansible,
    artifacts,
    become,
    bundle,
    files,
    paths,
    progname,
    progress,
    serve,
    ui,
)
from clusterlab.providers import ProviderError, local


def _rook_disabled(spec: dict) -> str | None:
    return None if spec["rook"]["enabled"] else "rook.enabled is false in the lab spec"


@dataclass(frozen=True)
class Stage:
    name: str
    summary: str
    playbook: str | None  # None: provision, done in Python by the provider
    layer: str | None  # the verify layer that checks it
    built: bool = True
    skip: Callable[[dict], str | None] | None = None  # why a lab does not run it, or None


PIPELINE: tuple[Stage, ...] = (
    Stage(
        "provision", "the provider creates the nodes, the inventory and the SSH config", None, None
    ),
    Stage(
        "prepare",
        "OS bootstrap, swap/modules/sysctls/time, containerd, Ceph disk prerequisites",
        "prepare.yml",
        "nodes",
    ),
    Stage(
        "kubernetes",
        "binaries, kubelet, kubeadm init/join (v1beta4), CNI, kubeconfig",
        "kubernetes.yml",
        "kubernetes",
    ),
    Stage(
        "rook",
        "Rook operator, CephCluster (host or pvc mode), block/file/object storage, toolbox",
        "rook.yml",
        "ceph",
        skip=_rook_disabled,
    ),
)
STAGES = {s.name: s for s in PIPELINE}

# verify layer -> its testinfra module under tests/infra/. The demos layer has no stage: it
# checks the demos run live on the lab (`inv demo NAME` records <state>/demos/NAME.done).
DEMOS_LAYER = "demos"
LAYERS: dict[str, str | None] = {
    s.layer: f"test_{s.layer}.py" for s in PIPELINE if s.layer and s.built
} | {DEMOS_LAYER: "test_demos.py"}


class NotBuilt(ProviderError):
    pass


def stages_until(until: str | None) -> list[Stage]:
    """The built stages from provision through `until` (default: every built stage)."""
    if until is not None and until not in STAGES:
        raise ProviderError(
            f"unknown stage {until!r} (stages: {', '.join(s.name for s in PIPELINE)})"
        )
    out = []
    for stage in PIPELINE:
        if not stage.built:
            if stage.name == until:
                raise NotBuilt(f"not implemented yet: {stage.name}")
            break
        out.append(stage)
        if stage.name == until:
            break
    return out


def done_marker(spec: dict, stage: str) -> Path:
    return paths.state_dir(spec["name"]) / "stages" / f"{stage}.done"


def mark_done(spec: dict, stage: str) -> None:
    files.atomic_write(done_marker(spec, stage), time.strftime("%Y-%m-%dT%H:%M:%S%z") + "\n")


def clear_done_after(spec: dict, stage: str) -> None:
    """Forget that the stages after `stage` completed (reset undid them)."""
    names = [s.name for s in PIPELINE]
    for later in names[names.index(stage) + 1 :]:
        done_marker(spec, later).unlink(missing_ok=True)
    for record in (paths.state_dir(spec["name"]) / "demos").glob("*.done"):
        record.unlink()  # a demo's objects do not outlive the cluster stages under them


def layers_done(spec: dict) -> list[str]:
    return [s.layer for s in PIPELINE if s.layer and s.built and done_marker(spec, s.name).exists()]


def inventory_file(spec: dict) -> Path:
    inv = paths.state_dir(spec["name"]) / "hosts.yml"
    if not inv.exists():
        raise ProviderError(
            f"lab {spec['name']} is not up (no {inv}); run `{progname.cmd('up --lab ' + spec['name'])}`"
        )
    return inv


def read_timings(spec: dict) -> dict[str, float]:
    """The recorded stage durations; a damaged record is said in one line and started anew."""
    path = paths.state_dir(spec["name"]) / "timings.json"
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (ValueError, UnicodeDecodeError):
        data = None
    if not isinstance(data, dict) or not all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in data.values()
    ):
        ui.info(f"    {path} was damaged; the timings are recorded anew")
        path.unlink(missing_ok=True)
        return {}
    return data


def record_timing(spec: dict, stage: str, seconds: float) -> None:
    path = paths.state_dir(spec["name"]) / "timings.json"
    data = read_timings(spec)
    data[stage] = round(seconds, 2)
    files.atomic_write(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def timings_table(spec: dict, names: list[str]) -> str:
    """The recorded durations of `names` (stages and verify layers) as a table, with a total."""
    data = read_timings(spec)
    rows = [[n, f"{data[n]:.1f} s"] for n in names if n in data]
    rows.append(["total", f"{sum(data[n] for n in names if n in data):.1f} s"])
    return ui.table(["STAGE", "TIME"], rows)


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
            paths.PLAYBOOKS / playbook,
            inv,
            log,
            extra_vars=extra_vars,
            become_password=password,
            progress=progress.StageProgress(),
        )
        if not result:  # Ansible runs a play on no host as a success
            raise ProviderError(
                f"{stage}: no host ran it: the inventory {inv} lists none; "
                f"{progname.cmd('up')} writes it anew"
            )
        changed = sum(h["changed"] for h in result.values())
        ui.info(f"    {len(result)} hosts, {changed} changes")
    record_timing(spec, stage, time.monotonic() - start)
    return result


def _bundle_record(spec: dict) -> Path:
    return paths.state_dir(spec["name"]) / "bundle"


def use_bundle(spec: dict, where: str | Path) -> None:
    """`up --bundle DIR`: serve this bundle to the lab; remembered until `down` once
    `check_bundle` accepted it (so `inv prepare`, `rebuild`, `demo` … keep using it)."""
    path = Path(where).expanduser().resolve()
    clash = [k for k in ("mirror_url", "image_registry") if spec["artifacts"][k]]
    if clash:
        raise ProviderError(
            f"--bundle and artifacts.{clash[0]} in the lab spec: one source, the bundle or "
            "your own mirrors"
        )
    own = spec["artifacts"].get("bundle")
    if own and Path(own) != path:
        ui.info(f"    --bundle {path} replaces the lab spec's artifacts.bundle {own}")
    spec["artifacts"]["bundle"] = str(path)
    _REMEMBER.add(spec["name"])


_REMEMBER: set[str] = set()  # labs whose bundle came from the command line, not the spec


def remembered_bundle(spec: dict) -> dict:
    """The spec with the bundle an earlier `up --bundle` chose (its own artifacts.bundle wins);
    kept across `rebuild`, whose destroy removes the record with the rest of the state."""
    if spec["artifacts"].get("bundle"):
        return spec
    try:
        remembered = _bundle_record(spec).read_text().strip()
    except OSError:  # none recorded (or a state dir this user may not read: its task says so)
        return spec
    spec["artifacts"]["bundle"] = remembered
    _REMEMBER.add(spec["name"])
    return spec


def bundle_needs(spec: dict, todo: list[Stage]) -> set[str]:
    """The stages (and demos) whose artifacts a bundle must hold to run `todo`: once the lab
    runs up to its last stage, the demos it carries too."""
    names = {st.name for st in todo}
    if todo and todo[-1] is PIPELINE[-1]:
        names |= {f"demo:{d}" for d in spec["demos"]}
    return names


SERVE_TOOLS = ("docker-registry", "skopeo")


def check_bundle(spec: dict, needs: list[Stage] | set[str]) -> None:
    """Refuse a bundle that lacks anything the stages `needs` (or named stages/demos) use,
    naming each missing artifact, and a controller that cannot serve it — before any node
    is touched."""
    where = spec["artifacts"].get("bundle")
    if not where:
        return
    bundle.read_index(Path(where))  # a stranger's index is refused before anything is computed
    names = needs if isinstance(needs, set) else bundle_needs(spec, needs)
    tools = [t for t in SERVE_TOOLS if not shutil.which(t)]
    if tools:
        raise bundle.BundleError(
            f"serving bundle {where} needs {', '.join(tools)} on this machine; run as root: "
            f"apt-get install -y {' '.join(SERVE_TOOLS)}"
        )
    lacking = bundle.missing(artifacts.lab_artifacts(spec).for_stages(names), Path(where))
    if lacking:
        raise bundle.BundleError(
            f"bundle {where} lacks {len(lacking)} artifact(s) lab {spec['name']} needs "
            f"(add them with `{progname.cmd(' '.join(['artifacts fetch --lab', spec['name'], '--out', str(where)]))}` on a "
            "connected machine):\n  " + "\n  ".join(lacking)
        )
    if spec["name"] in _REMEMBER:
        record = _bundle_record(spec)
        record.parent.mkdir(parents=True, exist_ok=True)
        record.write_text(f"{where}\n")


def serve_bundle(spec: dict) -> None:
    """Make sure the lab's bundle is being served (the nodes' mirrors point at it)."""
    where = spec["artifacts"].get("bundle")
    if where:  # the registry gets the images this lab needs (a bundle may serve several)
        serve.start(spec, Path(where), {i.ref for i in artifacts.lab_artifacts(spec).images})


def run_stage(spec: dict, name: str) -> dict:
    """Run one playbook stage of the pipeline and record that it completed."""
    stage = STAGES[name]
    if not stage.built or stage.playbook is None:
        raise NotBuilt(f"not implemented yet: {name}")
    reason = stage.skip(spec) if stage.skip else None
    if reason:
        ui.info(f"--  {name}: skipped ({reason})")
        return {}
    if name != "prepare" and spec["provider"] == "local" and not local.pods_can_run():
        ui.info(f"    warning: {local.NO_PODS}")  # said before the stage fails on it
    check_bundle(spec, [stage])
    serve_bundle(spec)
    result = run_playbook_stage(spec, name, stage.playbook)
    mark_done(spec, name)
    show_warnings(spec)
    return result


def show_warnings(spec: dict) -> None:
    """Print what a stage recorded as warnings (<state>/warnings/*.txt, one per line)."""
    for path in sorted((paths.state_dir(spec["name"]) / "warnings").glob("*.txt")):
        for line in path.read_text().splitlines():
            if line.strip():
                ui.info(f"    warning: {line}")


def reset(spec: dict) -> dict:
    """Run the reset playbook (already confirmed by the caller)."""
    result = run_playbook_stage(
        spec, "reset", "reset.yml", extra_vars={"reset_confirmation": "yes"}
    )
    clear_done_after(spec, "prepare")  # the nodes stay prepared; later stages are undone
    return result


def verify(spec: dict, layers: list[str] | None = None) -> None:
    """Run the testinfra layers; a layer whose stage is not built or has not run is skipped."""
    inv = inventory_file(spec)
    state = paths.state_dir(spec["name"])
    wanted = layers or list(LAYERS)
    done = layers_done(spec)
    unknown = [x for x in wanted if x not in LAYERS]
    if unknown:
        raise ProviderError(
            f"unknown verify layer {', '.join(unknown)} (layers: {', '.join(LAYERS)})"
        )
    checked = 0
    for layer in wanted:
        module = LAYERS[layer]
        if module is None:
            ui.info(f"--  verify {layer}: skipped (its stage is not built yet)")
            continue
        if layer == DEMOS_LAYER:
            if not list((state / "demos").glob("*.done")):
                ui.info(
                    f"--  verify {layer}: skipped (no demo has run on this lab; "
                    f"{progname.cmd('demo NAME --lab ' + spec['name'])})"
                )
                continue
        elif layer not in done:
            stage = next(s.name for s in PIPELINE if s.layer == layer)
            reason = STAGES[stage].skip(spec) if STAGES[stage].skip else None
            if reason:
                ui.info(f"--  verify {layer}: skipped ({reason})")
                continue
            ui.info(
                f"--  verify {layer}: skipped (the {stage} stage has not run on this lab; "
                f"{progname.cmd(' '.join(['up --lab', spec['name'], '--until', stage]))})"
            )
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
        checked += 1
    if not checked:
        raise ProviderError(
            f"verify: nothing to check on lab {spec['name']}: none of its layers has run "
            f"(stage records: {state / 'stages'}); {progname.cmd('up')} runs the stages and "
            "records them"
        )


def pipeline_markdown() -> str:
    """The pipeline table for docs/stages.md (a test keeps the two equal)."""
    rows = ["| stage | what | playbook | verify layer |", "|---|---|---|---|"]
    for s in PIPELINE:
        playbook = f"`playbooks/{s.playbook}`" if s.playbook else "(provider, in Python)"
        layer = s.layer or "—"
        what = s.summary + ("" if s.built else " — not built yet")
        rows.append(f"| `{s.name}` | {what} | {playbook} | {layer} |")
    return "\n".join(rows)
