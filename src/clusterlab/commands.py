"""The task interface: every `inv` / `clusterlab` task. Logic lives in the modules it calls."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from invoke import Collection, Task, task
from invoke.exceptions import Exit
from invoke.parser import Argument

from clusterlab import (
    access,
    ansible,
    artifacts,
    bundle,
    hostprereq,
    paths,
    progname,
    registry,
    scaffold,
    serve,
    specdoc,
    sshconf,
    stages,
    ui,
)
from clusterlab import inventory as inventory_mod
from clusterlab import lab as lab_mod
from clusterlab import manifests as manifests_mod
from clusterlab.demos import DEMOS, ORDER, missing, runner
from clusterlab.demos.base import DemoError
from clusterlab.progname import UsageError
from clusterlab.providers import ProviderError, get_provider
from clusterlab.spec import SpecError, check_lab_name, for_provider, load_spec_file

LAB_HELP = "Lab name: reads inventories/NAME/lab.yml (default: $CLUSTERLAB_LAB or 'default')."


class NotImplementedStage(Exception):
    pass


def not_implemented(stage: str) -> None:
    raise NotImplementedStage(f"not implemented yet: {stage}")


def lab_name(c: Any, lab: str | None) -> str:
    if lab:
        return lab
    configured = c.config.get("clusterlab", {}).get("lab") if hasattr(c, "config") else None
    return configured or os.environ.get("CLUSTERLAB_LAB") or "default"


def load(c: Any, lab: str | None, file: str | None = None) -> dict:
    if file:
        return load_spec_file(file)
    name = check_lab_name(lab_name(c, lab), "--lab")
    path = paths.lab_spec_file(name)
    if not path.exists():
        where = ", ".join(str(r) for r in paths.inventory_roots())
        raise SpecError(
            [
                f"(lab): no lab named {name!r} in {where} (known: {', '.join(paths.known_labs())}); "
                f"`clusterlab init {name}` makes one"
            ]
        )
    spec = stages.remembered_bundle(load_spec_file(path))
    if spec["name"] != name:
        raise SpecError([f"name: {spec['name']!r} differs from its folder inventories/{name}/"])
    return spec


def handles_errors(fn: Callable) -> Callable:
    """Turn our exceptions into clear messages and exit codes (2: bad spec, 1: failure)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except SpecError as exc:
            for line in exc.problems:
                print(line, file=sys.stderr)
            raise Exit(code=2) from None
        except UsageError as exc:
            print(f"error: {exc}", file=sys.stderr)
            raise Exit(code=2) from None
        except (
            ProviderError,
            NotImplementedStage,
            ansible.AnsibleError,
            bundle.BundleError,
            artifacts.ArtifactError,
        ) as exc:
            print(f"error: {exc}", file=sys.stderr)
            raise Exit(code=1) from None
        except OSError as exc:  # disk full, read-only, permissions: one line naming the path
            print(f"error: {os_error(exc)}", file=sys.stderr)
            raise Exit(code=1) from None

    return wrapper


def os_error(exc: OSError) -> str:
    where = " -> ".join(str(f) for f in (exc.filename, exc.filename2) if f)
    return f"{exc.strerror or exc}{f': {where}' if where else ''}"


def here(s: dict) -> None:
    """Refuse (touching nothing) a lab this machine records as living in another directory."""
    registry.require_owner(s["name"], paths.state_dir(s["name"]))


@contextlib.contextmanager
def working_on(s: dict):
    """For a command that changes or reads the lab: it is this directory's, and no other
    command works on it meanwhile (its lock, held until the command ends)."""
    here(s)
    with registry.lab_lock(s["name"]):
        yield


def lab_task(*args: Any, **kwargs: Any) -> Callable:
    """@task with --lab help added and our error handling."""
    help_ = {"lab": LAB_HELP, **kwargs.pop("help", {})}

    def deco(fn: Callable) -> Any:
        return task(handles_errors(fn), help=help_, **kwargs)

    if args and callable(args[0]):
        return deco(args[0])
    return deco


@lab_task(
    help={
        "provider": "Provider to check for (default: the lab's provider).",
        "yes": "Install what is missing without asking (root on Debian/Ubuntu).",
    }
)
def setup(c, lab=None, provider=None, yes=False):
    """Check host prerequisites; install missing ones with apt (root on Debian/Ubuntu: asks on
    a terminal unless --yes) or print the command that installs them."""
    prov = provider or load(c, lab)["provider"]
    missing = hostprereq.ensure(prov, ask=not yes)
    if missing:
        how = hostprereq.apt_command(missing)
        if hostprereq.can_install() and not yes:
            how = f"{progname.cmd('setup --yes' + (f' --provider {provider}' if provider else ''))}, or:\n  {how}"
        raise ProviderError(f"missing host packages for the {prov} provider; run as root:\n  {how}")
    ui.info(f"host prerequisites for the {prov} provider: present")


@task(
    help={
        "name": "Name of the new lab: a-z, 0-9, '-'.",
        "from": "Example lab to start from (default: default).",
    }
)
@handles_errors
def init(c, name, from_="default"):
    """Write a commented inventories/NAME/lab.yml to start from (never overwrites one)."""
    path = scaffold.create(name, from_)
    print(path)
    ui.info(
        f"edit it (every field: {progname.cmd('spec --reference')}), then: "
        f"{progname.cmd(f'spec --lab {name}')}; {progname.cmd(f'up --lab {name}')}"
    )


@lab_task(
    help={
        "file": "Validate this spec file instead of inventories/LAB/lab.yml.",
        "reference": "Print the reference of every spec field (docs/spec.md) instead.",
    }
)
def spec(c, lab=None, file=None, reference=False):
    """Validate a lab spec; print it normalized as YAML (exit 0) or every problem (exit 2)."""
    if reference:
        print(specdoc.document(), end="")
        return
    s = load(c, lab, file)
    print(yaml.safe_dump(for_provider(s), sort_keys=False), end="")
    print(runtime_note(s))


def runtime_note(s: dict) -> str:
    """A YAML comment saying which containerd the lab's nodes get (container_runtime_source
    as the prepare stage resolves it, group_vars included)."""
    try:
        resolved = artifacts.stage_vars(s)
    except ansible.AnsibleError as exc:
        return f"# containerd: cannot tell ({str(exc).splitlines()[0]})"
    if resolved["container_runtime_source"] == "download":
        version = resolved["download_table"]["containerd"]["version"]
        return (
            f"# containerd: the downloaded {version} (container_runtime_source: distro in the "
            "lab's group_vars chooses the distribution's instead)"
        )
    return (
        "# containerd: the distribution's (Debian 12: 1.6.20, older than containerd's tested "
        "versions for Kubernetes 1.35), since the lab cannot download containerd 2.x (not in "
        "the download cache, no mirror or bundle holding it, upstream unreachable) or group_vars "
        "chose container_runtime_source: distro"
    )


@lab_task
def inventory(c, lab=None):
    """Print the lab's Ansible inventory (the generated one once the lab is up, else planned)."""
    s = load(c, lab)
    here(s)
    generated = paths.state_dir(s["name"]) / "hosts.yml"
    if generated.exists():
        print(generated.read_text(), end="")
        return
    ui.info(f"# lab {s['name']} is not up: planned inventory")
    planned = inventory_mod.render(s, get_provider(s).planned_connections())
    print(yaml.safe_dump(planned, sort_keys=False), end="")


def _provider(c, lab):
    s = load(c, lab)
    return s, get_provider(s)


UNTIL_HELP = "Stop after this stage: " + ", ".join(
    s.name + ("" if s.built else " (not built yet)") for s in stages.PIPELINE
)


@lab_task(
    help={
        "until": UNTIL_HELP + " (default: every built stage).",
        "trust_new_hosts": "Static provider: record host keys of nodes seen for the first time "
        "(trust on first use). Without it, unknown host keys are refused.",
        "bundle": f"Offline bundle directory ({progname.cmd('artifacts fetch')}) to serve to the nodes: "
        "files over HTTP, images from a registry on the controller (as artifacts.bundle; "
        "remembered until down).",
    }
)
def up(c, lab=None, until=None, trust_new_hosts=False, bundle=None):
    """Create the lab's nodes (idempotent), run the stages in order, then verify what ran."""
    stages.stages_until(until)  # a bad --until is refused before the lab is looked at
    s, prov = _provider(c, lab)
    if bundle:
        stages.use_bundle(s, bundle)
    prov.trust_new_hosts = trust_new_hosts
    prov.check_user()
    with working_on(s):
        ui.info(stages.timings_table(s, _up(s, prov, until)))


def _up(s: dict, prov, until: str | None = None) -> list[str]:
    """Provision and run the stages up to `until`; the names of what ran, for the timings."""
    todo = stages.stages_until(until)  # an unknown or unbuilt stage is refused before any work
    stages.check_bundle(s, todo)  # a bundle lacking anything is refused before any node is touched
    setup_missing = hostprereq.ensure(s["provider"])
    if setup_missing:
        raise ProviderError(
            "missing host packages; run as root:\n  " + hostprereq.apt_command(setup_missing)
        )
    fresh = registry.entry(s["name"]) is None
    prov.claim()  # the lab's name on this machine, before anything is made
    start = time.monotonic()
    try:
        with ui.stage(f"provision ({s['provider']})"):
            prov.create()
    except Exception:
        if fresh and not prov.state.exists():  # refused before it made anything
            registry.release(s["name"], prov.state)
        raise
    stages.record_timing(s, "provision", time.monotonic() - start)
    return ["provision", *_run_stages(s, todo)]


def _run_stages(s: dict, todo: list) -> list[str]:
    """Run the playbook stages of `todo` in order, then verify the layers they checked."""
    ran = [st for st in todo if st.playbook and not (st.skip and st.skip(s))]
    for stage in todo:
        if stage.playbook:
            stages.run_stage(s, stage.name)  # says so when the lab skips it
    layers = [st.layer for st in ran if st.layer]
    if layers:
        stages.verify(s, layers)
    return [st.name for st in ran] + [f"verify-{x}" for x in layers]


@lab_task
def down(c, lab=None):
    """Destroy the lab's nodes and everything the provider made; safe on a lab already gone."""
    s, prov = _provider(c, lab)
    with working_on(s), ui.stage("destroy"):
        _destroy(s, prov)


def _destroy(s: dict, prov: Any) -> None:
    """The provider's destroy, then the lab's name is free on the machine."""
    prov.destroy()
    registry.release(s["name"], prov.state)


@lab_task(help={"json": "Print the lab (as `labs --json` shows it) and its nodes as JSON."})
def status(c, lab=None, json_=False):
    """Print a table of the lab's nodes: name, state, address, disks."""
    s, prov = _provider(c, lab)
    here(s)
    if json_:
        info = lab_mod.summary(s["name"], registry.entry(s["name"]), paths.state_dir(s["name"]))
        info["nodes"] = [vars(n) for n in prov.status()]
        print(json.dumps(info, indent=2))
        return
    rows = [[n.name, n.state, n.address, " ".join(n.disks) or "-"] for n in prov.status()]
    print(ui.table(["NODE", "STATE", "ADDRESS", "DISKS"], rows))
    if s["artifacts"].get("bundle"):
        running = sorted(set(serve.processes(paths.state_dir(s["name"])).values()))
        print(
            f"bundle {s['artifacts']['bundle']}: "
            + (
                f"served ({', '.join(running)})"
                if running
                else "not served now (the next stage starts it)"
            )
        )


@lab_task(help={"node": f"Node name, as in `{progname.cmd('status')}`."})
def ssh(c, node, lab=None):
    """Open a shell on NODE, or run the command after `--` (ssh node1 -- uptime)."""
    s = load(c, lab)
    here(s)
    cfg = paths.state_dir(s["name"]) / "ssh_config"
    if not cfg.exists():
        raise ProviderError(
            f"lab {s['name']} is not up (no {cfg}); run `{progname.cmd('up --lab ' + s['name'])}`"
        )
    names = [n["name"] for n in s["nodes"]]
    if node not in names:
        raise ProviderError(f"no node {node!r} in lab {s['name']} (nodes: {', '.join(names)})")
    sshconf.runtime_dir()  # where the ssh_config's control socket goes (gone after a reboot)
    cmd = ["ssh", "-F", str(cfg), node]
    remainder = getattr(c, "remainder", "") or ""
    if remainder:
        cmd.append(remainder)
    else:
        cmd.insert(1, "-t")
    raise Exit(code=subprocess.call(cmd))


@lab_task
def prepare(c, lab=None):
    """Re-run the prepare stage (OS bootstrap, node prep, containerd, storage prerequisites)."""
    s = load(c, lab)
    with working_on(s):
        stages.run_stage(s, "prepare")


@lab_task
def kubernetes(c, lab=None):
    """Re-run the Kubernetes stage (binaries, kubelet, kubeadm init/join, CNI, kubeconfig)."""
    s = load(c, lab)
    with working_on(s):
        stages.run_stage(s, "kubernetes")


@lab_task
def rook(c, lab=None):
    """Re-run the Rook stage (operator, CephCluster, block/file/object storage, toolbox)."""
    s = load(c, lab)
    with working_on(s):
        stages.run_stage(s, "rook")


@lab_task
def ceph(c, lab=None):
    """Run a ceph command in the lab's Rook toolbox: ceph -- status."""
    s = load(c, lab)
    here(s)
    args = shlex.split(getattr(c, "remainder", "") or "") or ["status"]
    cmd = access.kubectl_command(s, access.toolbox_exec(args))
    raise Exit(code=subprocess.call(cmd, env=access.kubectl_env(s)))


ARTIFACT_ACTIONS = ("list", "fetch")


@lab_task(
    name="artifacts",
    positional=["action"],
    help={
        "action": "list: print every file (URL, sha256, where it goes) and image the lab "
        "needs; fetch: download them into the bundle --out DIR.",
        "out": "fetch: the bundle directory (made if missing; several labs may share one).",
    },
)
def artifacts_(c, action, lab=None, out=None):
    """Everything a lab needs offline: list it, or fetch it into a bundle for `up --bundle`."""
    if action not in ARTIFACT_ACTIONS:
        raise UsageError(
            f"{progname.cmd('artifacts ACTION')}: ACTION is one of {', '.join(ARTIFACT_ACTIONS)}"
        )
    s = load(c, lab)
    arts = artifacts.lab_artifacts(s)
    if action == "list":
        print(artifacts.listing(arts))
        return
    if not out:
        raise UsageError(f"{progname.cmd('artifacts fetch --out DIR')}: where to write the bundle")
    with ui.stage(f"fetch {len(arts.files)} files and {len(arts.images)} images into {out}"):
        counts = bundle.fetch(arts, Path(out), ui.info)
    ui.info(
        f"bundle {out}: {counts['fetched']} fetched, {counts['present']} already present; "
        f"bring the lab up offline with: {progname.cmd(' '.join(['up --lab', s['name'], '--bundle', str(out)]))}"
    )


@lab_task
def kubeconfig(c, lab=None):
    """Print the path of the lab's admin kubeconfig (written by the Kubernetes stage)."""
    s = load(c, lab)
    here(s)
    print(access.kubeconfig_path(s))


@lab_task
def kubectl(c, lab=None):
    """Run the lab's checksummed kubectl against its cluster: kubectl -- get nodes -o wide."""
    s = load(c, lab)
    here(s)
    args = shlex.split(getattr(c, "remainder", "") or "")
    raise Exit(code=subprocess.call(access.kubectl_command(s, args), env=access.kubectl_env(s)))


@lab_task(
    help={
        "out": "Write into this directory (default: ./manifests/LAB). Existing files are replaced.",
    }
)
def manifests(c, lab=None, out=None):
    """Write what the lab would hand to kubeadm or apply (kubeadm/, cni/ …), touching no node."""
    s = load(c, lab)
    target = Path(out) if out else Path.cwd() / "manifests" / s["name"]
    for path in manifests_mod.render(s, target):
        if path.name != manifests_mod.MISSING:
            print(path)
    for gap in manifests_mod.missing(target):
        ui.info(f"warning: not rendered: {gap}")


@lab_task(help={"layer": "Only this layer: nodes, kubernetes, ceph, demos."})
def verify(c, lab=None, layer=None):
    """Run the testinfra verify suites against the lab, every layer whose stage has run."""
    s, prov = _provider(c, lab)
    with working_on(s):
        down_nodes = [f"{n.name} ({n.state})" for n in prov.status() if n.state == "orphaned"]
        if down_nodes:
            raise ProviderError(
                f"nodes not running as the lab made them: {', '.join(down_nodes)}; "
                f"{progname.cmd('up')} restarts them"
            )
        stages.verify(s, [layer] if layer else None)


def confirm_reset(s: dict, yes: bool) -> None:
    if yes:
        return
    if not sys.stdin.isatty():
        raise ProviderError(
            "reset wipes the lab's data disks; confirm with --yes (no terminal to ask)"
        )
    disks = sum(len(n["disks"]) for n in s["nodes"])
    answer = input(
        f"Reset lab {s['name']}: wipe Kubernetes, Rook and {disks} data disk(s) on "
        f"{len(s['nodes'])} node(s)? Type 'yes': "
    )
    if answer.strip() != "yes":
        raise ProviderError("reset not confirmed; nothing was changed")


@lab_task(help={"yes": "Do not ask for confirmation."})
def reset(c, lab=None, yes=False):
    """Wipe Kubernetes and Rook state and zap the lab's data disks; nodes stay."""
    s = load(c, lab)
    with working_on(s):
        confirm_reset(s, yes)
        stages.reset(s)


@lab_task(
    help={
        "keep_nodes": "Reset and run the stages again on the existing nodes instead of down + up.",
        "until": UNTIL_HELP + ".",
        "yes": "With --keep-nodes: do not ask before wiping the data disks.",
    }
)
def rebuild(c, lab=None, keep_nodes=False, until=None, yes=False):
    """Build the lab again: down + up, or with --keep-nodes reset + every stage + verify."""
    s, prov = _provider(c, lab)
    with working_on(s):
        _rebuild(s, prov, keep_nodes, until, yes)


def _rebuild(s: dict, prov: Any, keep_nodes: bool, until: str | None, yes: bool) -> None:
    todo = stages.stages_until(until)
    timings: dict[str, float] = {}
    if keep_nodes:
        confirm_reset(s, yes)
        with ui.stage("rebuild: reset", timings):
            stages.reset(s)
        for stage in todo:
            if stage.playbook:
                with ui.stage(f"rebuild: {stage.name}", timings):
                    stages.run_stage(s, stage.name)
        layers = [st.layer for st in todo if st.layer]
        with ui.stage("rebuild: verify", timings):
            stages.verify(s, layers)
        ran = [st.name for st in todo if st.playbook] + [f"verify-{x}" for x in layers]
    else:
        with ui.stage("rebuild: down", timings):
            _destroy(s, prov)
        with ui.stage("rebuild: up", timings):
            ran = _up(s, prov, until)
        stages.record_timing(s, "down", timings["rebuild: down"])  # destroy took the old record
    ui.info(stages.timings_table(s, ["down", "reset", *ran]))


class _UnlessListing(Argument):
    """NAME of `inv demo NAME`: positional, yet not required with --list (invoke has no
    optional positional arguments; this one counts as given once --list is)."""

    listing: Argument | None = None

    @property
    def value(self) -> Any:
        given = Argument.value.fget(self)
        return "" if given is None and self.listing and self.listing.value else given

    @value.setter
    def value(self, arg: str) -> None:
        self.set_value(arg, cast=True)


class DemoTask(Task):
    def get_arguments(self, *args: Any, **kwargs: Any) -> list[Argument]:
        out = super().get_arguments(*args, **kwargs)
        name = next(a for a in out if "name" in a.names)
        name.__class__ = _UnlessListing
        name.listing = next(a for a in out if "list" in a.names)
        return out


@lab_task(
    klass=DemoTask,
    positional=["name"],
    help={
        "name": f"Demo to run ({progname.cmd('demo --list')} names them).",
        "list": "List the demos: name, minutes it takes live, what it shows.",
        "step": "Wait for Enter between steps (on a terminal only).",
        "cleanup": "Remove everything the demo made (namespace, volumes) and check none is left.",
    },
)
def demo(c, name=None, lab=None, *, list_=False, step=False, cleanup=False):
    """Run one meetup demo live on the lab: each step narrated, its command shown, then run."""
    if list_:
        print(runner.listing(DEMOS))
        if missing():
            ui.info(f"not built yet: {', '.join(missing())}")
        return
    if not name:
        raise UsageError(
            f"which demo? {progname.cmd('demo NAME')} ({progname.cmd('demo --list')} names them)"
        )
    if name not in ORDER:
        raise ProviderError(f"no demo {name!r} (demos: {', '.join(ORDER)})")
    if name not in DEMOS:
        not_implemented(f"demo {name}")
    s = load(c, lab)
    if name not in s["demos"] and not cleanup:
        raise ProviderError(
            f"lab {s['name']} does not carry demo {name} (its demos: "
            f"{', '.join(s['demos']) or 'none'}); add it to demos: in its lab.yml"
        )
    with working_on(s):
        _demo(s, name, step=step, cleanup=cleanup)


def _demo(s: dict, name: str, *, step: bool, cleanup: bool) -> None:
    inv = stages.inventory_file(s)
    if not cleanup and not stages.done_marker(s, "rook").exists():
        raise ProviderError(
            f"demo {name} needs the Rook stage's storage classes; the rook stage has not run "
            f"on lab {s['name']} ({progname.cmd('up --lab ' + s['name'])})"
        )
    if not cleanup:  # offline labs: the demo's images are in the bundle, and it is served
        stages.check_bundle(s, {f"demo:{name}"})
        stages.serve_bundle(s)
    pause = runner.pause_for(step)
    if step and pause is None:
        ui.info("--step: no terminal to press Enter on; running the steps without pausing")
    ctx = runner.context(yaml.safe_load(inv.read_text()))
    try:
        runner.run_demo(
            DEMOS[name],
            ctx,
            paths.state_dir(s["name"]),
            runner.kubectl_executor(access.kubectl_command(s, []), access.kubectl_env(s)),
            runner.ssh_prober(
                inv.parent / "ssh_config", bool(ctx.vars["clusterlab_shared_kernel"])
            ),
            cleanup=cleanup,
            pause=pause,
        )
    except DemoError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise Exit(code=1) from None


def developer_checkout() -> Path:
    """The checkout, for the developer tasks (lint, test); an installed copy has none."""
    root = paths.checkout()
    if root is None:
        raise Exit(
            "lint and test are developer tasks of a clusterlab checkout; this clusterlab is "
            f"installed ({paths.ROOT}). Run them from a checkout: pip install -e '.[dev]'",
            code=1,
        )
    return root


def lint_commands() -> list[list[str]]:
    root = str(paths.ROOT)
    playbooks = sorted(str(p) for p in paths.PLAYBOOKS.rglob("*.yml"))
    cmds = [
        [ansible.bin_path("ruff"), "check", root],
        [ansible.bin_path("ruff"), "format", "--check", root],
        [ansible.bin_path("yamllint"), "-s", root],
        [ansible.bin_path("ansible-lint"), "--profile", "production", "--strict"],
    ]
    inv = str(paths.ROOT / "tests" / "syntax-inventory.yml")
    cmds += [
        [ansible.bin_path("ansible-playbook"), "--syntax-check", "-i", inv, pb] for pb in playbooks
    ]
    return cmds


def run_gates(cmds: list[list[str]]) -> list[str]:
    failed = []
    for cmd in cmds:
        short = " ".join(Path(cmd[0]).name if i == 0 else a for i, a in enumerate(cmd))
        ui.info(f"==> {short.replace(str(paths.ROOT) + '/', '')}")
        rc = subprocess.call(cmd, cwd=paths.ROOT, env=ansible.env())
        if rc != 0:
            failed.append(short)
    return failed


@task
def lint(c):
    """Run every gate but the tests: ruff, ruff format, yamllint, ansible-lint, syntax-check."""
    developer_checkout()
    failed = run_gates(lint_commands())
    if failed:
        raise Exit("lint failed: " + "; ".join(failed), code=1)


@task(
    help={
        "pytest_args": 'Extra pytest arguments, e.g. "-m unit" or "-k spec".',
        "no_lint": "Skip the lint gates.",
        "junit": "Write a JUnit XML report to this file.",
    }
)
def test(c, pytest_args="", no_lint=False, junit=None):
    """Install the suite's host packages (root on Debian/Ubuntu: hostprereq.TEST_PACKAGES),
    run the lint gates, then pytest (unit + integration)."""
    developer_checkout()
    missing = hostprereq.ensure_test_packages()
    if missing:
        ui.info(
            "tests that need them will be skipped; missing host packages: "
            f"{' '.join(missing)}; as root: {hostprereq.apt_command(missing)}"
        )
    failed = [] if no_lint else run_gates(lint_commands())
    cmd = [sys.executable, "-m", "pytest", *pytest_args.split()]
    if junit:
        cmd.append(f"--junitxml={junit}")
    ui.info("==> pytest " + " ".join(cmd[3:]))
    rc = subprocess.call(cmd, cwd=paths.ROOT, env=ansible.env())
    if rc != 0:
        failed.append(f"pytest (exit {rc})")
    if failed:
        raise Exit("failed: " + "; ".join(failed), code=1)


@task(name="labs", help={"json": "Print them as JSON."})
@handles_errors
def labs_(c, json_=False):
    """Every lab on this machine: name, provider, directory, network, nodes running, stages
    done, bundle served, and the command working on it now."""
    found = [lab_mod.summary(name, e) for name, e in sorted(registry.read().items())]
    if json_:
        print(json.dumps(found, indent=2))
        return
    rows = [
        [
            f["name"],
            f["provider"],
            f["directory"],
            f["network"] or "-",
            f"{f['nodes_running']}/{f['nodes_total']}",
            ",".join(f["stages_done"]) or "-",
            f["bundle_served"] or "-",
            f["busy"] or "-",
        ]
        for f in found
    ]
    print(
        ui.table(
            ["LAB", "PROVIDER", "DIRECTORY", "NETWORK", "NODES", "STAGES", "BUNDLE", "BUSY"], rows
        )
    )


TASKS = [
    init,
    labs_,
    setup,
    spec,
    inventory,
    up,
    down,
    status,
    ssh,
    prepare,
    kubernetes,
    rook,
    ceph,
    artifacts_,
    kubeconfig,
    kubectl,
    manifests,
    verify,
    reset,
    rebuild,
    demo,
    lint,
    test,
]


def namespace() -> Collection:
    return Collection(*TASKS)
