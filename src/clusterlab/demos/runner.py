"""Run a demo live: narrate each step, show its command, run it, trim the output, prove the point.

The runner talks to the cluster only through an executor: a callable taking the arguments after
`kubectl` and returning a Result. `kubectl_executor` makes the real one (the lab's checksummed
kubectl and admin kubeconfig); tests of the machinery inject their own, so the narration,
retries, cleanup and refusals are tested without a cluster.

A run: refuse when a node lacks a kernel client the demo needs (naming the nodes); clean what
a previous run left; render the manifests into <state>/demos/<name>/ (what `inv manifests`
writes); make the namespace; run the steps; record <state>/demos/<name>.done for the verify
layer. `--cleanup` deletes the namespace (waiting until it is gone), the cluster-scoped
objects labelled clusterlab.io/demo=<name>, and what the demo's own cleanup lists, then checks
that nothing is left.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from clusterlab import cephclient
from clusterlab.demos.base import (
    LABEL,
    Context,
    Demo,
    DemoError,
    Result,
    Step,
    fill,
    render_manifests,
)

Executor = Callable[[list[str]], Result]
Prober = Callable[[list[str]], dict[str, dict[str, bool]]]

# Cluster-scoped kinds a demo may make; each carries LABEL=<demo name> and goes at cleanup.
# A kind the cluster does not serve (no snapshot CRDs) is passed over.
CLUSTER_KINDS = ("persistentvolumes", "storageclasses", "volumesnapshotclasses")
READ_ONLY_VERBS = ("get", "describe", "logs", "top", "events", "explain", "api-resources")
DELETE_TIMEOUT = 300  # seconds for the namespace (its pods, claims, buckets) to go
LEFTOVER_WAIT = 120  # seconds for PVs of deleted claims to be deleted by the CSI driver
NO_RESOURCE = "the server doesn't have a resource type"


# ------------------------------------------------------------------ the lab


DNS_DOMAIN_RE = re.compile(
    r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?(\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)*"
)


def context(inventory: dict) -> Context:
    """The demo Context of an Ansible inventory (the YAML layout clusterlab writes)."""
    inv = inventory["all"]
    hostvars = {h: dict(v or {}) for h, v in (inv.get("hosts") or {}).items()}
    domain = inv["vars"].get("clusterlab_dns_domain")
    # the domain reaches the redis-ha demo's shell script and DNS names: a DNS name only
    if domain is not None and not DNS_DOMAIN_RE.fullmatch(str(domain)):
        raise DemoError(f"clusterlab_dns_domain {domain!r} is not a DNS domain like cluster.local")
    return Context(
        lab=inv["vars"]["clusterlab_lab"],
        vars=dict(inv["vars"]),
        hosts=sorted(hostvars),
        hostvars=hostvars,
        groups={g: sorted((v or {}).get("hosts") or {}) for g, v in inv["children"].items()},
    )


def kubectl_executor(prefix: list[str], env: dict[str, str] | None = None) -> Executor:
    """The real executor: `prefix` is the kubectl binary and its --kubeconfig."""

    def run(args: list[str]) -> Result:
        res = subprocess.run(
            [*prefix, *args],
            capture_output=True,
            text=True,
            env=env,
            check=False,
            stdin=subprocess.DEVNULL,
            timeout=DELETE_TIMEOUT + 60,
        )
        return Result(res.returncode, res.stdout, res.stderr)

    return run


def ssh_prober(ssh_config: Path, shared_kernel: bool) -> Prober:
    """Probe nodes over the lab's SSH config with the Rook stage's kernel-client probe."""

    def probe(nodes: list[str]) -> dict[str, dict[str, bool]]:
        out = {}
        for node in nodes:
            res = subprocess.run(
                ["ssh", "-F", str(ssh_config), "-o", "BatchMode=yes", node, "sh"],
                input=cephclient.probe_script(shared_kernel),
                capture_output=True,
                text=True,
                check=False,
                timeout=60,
            )
            if res.returncode != 0:
                raise DemoError(
                    f"cannot probe {node}'s kernel over SSH: {res.stderr.strip() or res.returncode}"
                )
            out[node] = cephclient.parse_probe(res.stdout)
        return out

    return probe


def lacking(needs: tuple[str, ...], features: dict[str, dict[str, bool]]) -> dict[str, list[str]]:
    """need -> the nodes that cannot serve it. "rbd": the nodes where the block StorageClass's
    mounter (rbd, or rbd-nbd through nbd; cephclient.choose) cannot map an image; any other
    need: the nodes whose kernel lacks that client."""
    out = {}
    for need in needs:
        if need == "rbd":
            nodes = cephclient.choose(features)["rbd_unusable"]
        else:
            nodes = [n for n in sorted(features) if not features[n].get(need)]
        if nodes:
            out[need] = nodes
    return out


def lacks(missing: dict[str, list[str]]) -> str:
    parts = []
    for need, nodes in missing.items():
        what = "rbd (or nbd)" if need == "rbd" else need
        parts.append(f"{', '.join(nodes)} lack{'s' if len(nodes) == 1 else ''} the {what} module")
    return "; ".join(parts)


def load_hint(missing: dict[str, list[str]], shared_kernel: bool) -> str:
    if shared_kernel:
        return (
            "these nodes share this machine's kernel: load the module on the host (modprobe "
            f"{' '.join(missing)})"
        )
    return "load the module on the nodes or use a lab whose kernel has it"


def refusal(demo: Demo, missing: dict[str, list[str]], shared_kernel: bool) -> str:
    return (
        f"demo {demo.name} needs kernel clients the lab does not offer: {lacks(missing)}; "
        f"{load_hint(missing, shared_kernel)}. Nothing was changed."
    )


# ------------------------------------------------------------------ the runner


def shown(args: list[str]) -> str:
    """The command line as the audience sees it (the kubeconfig stays out of it)."""
    return "$ " + shlex.join(["kubectl", *args])


def display_path(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def trimmed(step: Step, res: Result) -> str:
    if step.show is not None:
        return step.show(res)
    text = res.stdout
    if res.rc != 0 and res.stderr.strip():
        text += ("\n" if text and not text.endswith("\n") else "") + res.stderr
    return text


def read_only(step: Step) -> bool:
    """A step that only reads the cluster: re-runnable by the verify layer."""
    args = [a for a in step.kubectl or [] if not a.startswith("-")]
    return bool(args) and not step.apply and args[0] in READ_ONLY_VERBS


def verify_steps(demo: Demo, ctx: Context, done: int | None = None) -> list[Step]:
    """The checks the verify layer runs again on a demo that ran: the demo's own
    (extra["verify"](ctx) -> steps), else the last read-only step with a check among the
    `done` first steps (all by default; fewer where the demo ended early): the point proven
    in the state the demo leaves."""
    own = demo.extra.get("verify")
    if own is not None:
        return list(own(ctx))
    ran = demo.steps(ctx)[:done]
    checked = [s for s in ran if s.check is not None and read_only(s)]
    return checked[-1:]


@dataclass
class Runner:
    demo: Demo
    ctx: Context
    kubectl: Executor
    workdir: Path  # <state>/demos/<name>/: the rendered manifests
    out: Callable[[str], None] = print
    pause: Callable[[], Any] | None = None  # between steps (--step on a terminal)
    sleep: Callable[[float], Any] = time.sleep
    clock: Callable[[], float] = time.monotonic
    interval: float = 2.0
    probe: Prober | None = None  # the nodes' kernel clients, for needs
    ran: list[list[str]] = field(default_factory=list)  # every kubectl call, in order
    total: int = 0  # steps of the run, for the [n/total] counter
    done: int = 0  # steps completed
    kept: dict[str, str] = field(default_factory=dict)  # values steps kept ($name)
    ended: str | None = None  # why the demo ended early (cleanly), or None
    features: dict[str, dict[str, bool]] | None = None

    # -------------------------------------------------------------- steps

    def call(self, args: list[str]) -> Result:
        self.ran.append(list(args))
        return self.kubectl(list(args))

    def render(self) -> list[Path]:
        files = render_manifests(self.demo, self.ctx)
        if self.workdir.exists():
            shutil.rmtree(self.workdir)
        self.workdir.mkdir(parents=True)
        for name, text in files.items():
            (self.workdir / name).write_text(text)
        return [self.workdir / n for n in files]

    def apply(self, name: str) -> None:
        path = self.workdir / name
        if not path.is_file():
            raise DemoError(f"demo {self.demo.name}: no manifest {name} (templates/{name}.j2)")
        args = ["apply", "-n", self.demo.ns, "-f"]
        self.out(shown([*args, display_path(path)]))
        res = self.call([*args, str(path)])
        self.out(res.stdout.rstrip("\n"))
        if res.rc != 0:
            raise DemoError(f"kubectl apply -f {name} failed: {res.stderr.strip()}")

    def lacking(self, needs: tuple[str, ...]) -> dict[str, list[str]]:
        """need -> nodes lacking it, probing the nodes once per run."""
        if self.probe is None:
            raise DemoError(f"demo {self.demo.name} needs {', '.join(needs)}: no node prober")
        if self.features is None:
            self.features = self.probe(self.ctx.hosts)
        return lacking(needs, self.features)

    def attempt(self, step: Step) -> tuple[Result, str | None]:
        assert step.kubectl is not None
        args = fill(step.kubectl, self.kept)
        res = self.call(args)
        if res.rc != 0 and not step.may_fail:
            detail = res.stderr.strip().splitlines()[-1:] or [f"exit {res.rc}"]
            return res, f"`kubectl {shlex.join(args)}` failed: {detail[0]}"
        return res, (step.check(res, self.ctx) if step.check else None)

    def until_checked(self, step: Step, quiet: bool = False) -> tuple[Result, str | None]:
        """Run the step's kubectl and check, again every `interval` until the check passes
        or `wait` seconds are over."""
        deadline = self.clock() + step.wait
        res, problem = self.attempt(step)
        told = False
        while problem and self.clock() < deadline:
            if not told and not quiet:
                self.out(f"  … waiting up to {step.wait} s: {problem}")
                told = True
            self.sleep(self.interval)
            res, problem = self.attempt(step)
        return res, problem

    def run_step(self, number: int, step: Step) -> Result:
        """Narrate, apply, show the command, run it until checked, show the trimmed output;
        keep what the step keeps; a step's `stop` ends the demo cleanly (self.ended), even
        where its check failed (the reason is what the lab lacks)."""
        say = fill([step.say], self.kept)[0]
        self.out(f"\n[{number}/{self.total or number}] {say}")
        for name in step.apply:
            self.apply(name)
        res, problem = Result(0, "", ""), None
        if step.kubectl is not None:
            self.out(shown(fill(step.kubectl, self.kept)))
            res, problem = self.until_checked(step)
            text = trimmed(step, res).rstrip("\n")
            if text:
                self.out(text)
        reason = step.stop(res, self.ctx) if step.stop else None
        if reason:
            self.ended = reason
            return res
        if problem:
            raise DemoError(f"demo {self.demo.name}, step {number} ({say}): {problem}")
        if step.keep:
            self.kept.update(step.keep(res, self.ctx))
        return res

    def refuse_what_the_lab_lacks(self) -> None:
        """Demo.needs: a node without them stops the demo before anything changes."""
        if self.demo.needs:
            missing = self.lacking(self.demo.needs)
            if missing:
                shared = bool(self.ctx.vars.get("clusterlab_shared_kernel"))
                raise DemoError(refusal(self.demo, missing, shared))

    def run(self) -> None:
        """The whole demo: refuse what the lab cannot do, clean a previous run, render,
        namespace, the steps, the point (or why the demo ended early)."""
        shared = bool(self.ctx.vars.get("clusterlab_shared_kernel"))
        self.refuse_what_the_lab_lacks()
        if self.leftovers():
            self.out(f"A previous run of {self.demo.name} left objects: cleaning them first.")
            self.cleanup()
        if not self.namespace_in(self.render()):
            self.make_namespace()
        steps = self.demo.steps(self.ctx)
        self.total = len(steps)
        for i, step in enumerate(steps, 1):
            if step.needs:
                missing = self.lacking(step.needs)
                if missing:
                    self.ended = (
                        f"the rest needs kernel clients the lab does not offer: "
                        f"{lacks(missing)}; {load_hint(missing, shared)}"
                    )
                    break
            if i > 1 and self.pause is not None:
                self.pause()
            self.run_step(i, step)
            self.done = i
            if self.ended:
                break
        if self.ended:
            self.out(f"\nThe demo ends here ({self.done} of {self.total} steps): {self.ended}")
        else:
            self.out(f"\nThe point: {self.demo.point}")

    def namespace_in(self, files: list[Path]) -> bool:
        """Whether the demo's manifests make its namespace (applied by its first step)."""
        for path in files:
            for doc in yaml.safe_load_all(path.read_text()):
                if doc and doc.get("kind") == "Namespace":
                    if doc["metadata"]["name"] != self.demo.ns:
                        raise DemoError(f"{path.name}: namespace is not {self.demo.ns}")
                    return True
        return False

    def make_namespace(self) -> None:
        """The namespace, for a demo whose manifests do not make it."""
        ns = self.demo.ns
        res = self.call(["create", "namespace", ns])
        if res.rc != 0 and "AlreadyExists" not in res.stderr:
            raise DemoError(f"cannot create namespace {ns}: {res.stderr.strip()}")
        res = self.call(["label", "namespace", ns, f"{LABEL}={self.demo.name}", "--overwrite"])
        if res.rc != 0:
            raise DemoError(f"cannot label namespace {ns}: {res.stderr.strip()}")

    # -------------------------------------------------------------- cleanup

    def _pvs(self) -> list[dict]:
        res = self.call(["get", "persistentvolumes", "-o", "json"])
        if res.rc != 0:
            raise DemoError(f"cannot list PersistentVolumes: {res.stderr.strip()}")
        return json.loads(res.stdout or '{"items": []}')["items"]

    def _ours(self, pv: dict) -> bool:
        labels = pv["metadata"].get("labels") or {}
        claim = (pv.get("spec") or {}).get("claimRef") or {}
        return labels.get(LABEL) == self.demo.name or claim.get("namespace") == self.demo.ns

    def leftovers(self) -> list[str]:
        """What of the demo is still in the cluster (kind/name), or []."""
        out = []
        res = self.call(["get", "namespace", self.demo.ns, "--ignore-not-found", "-o", "name"])
        if res.rc != 0:
            raise DemoError(f"cannot read namespace {self.demo.ns}: {res.stderr.strip()}")
        out += res.stdout.split()
        out += [
            f"persistentvolume/{pv['metadata']['name']}" for pv in self._pvs() if self._ours(pv)
        ]
        for kind in CLUSTER_KINDS[1:]:
            res = self.call(["get", kind, "-l", f"{LABEL}={self.demo.name}", "-o", "name"])
            if res.rc != 0 and NO_RESOURCE not in res.stderr:
                raise DemoError(f"cannot list {kind}: {res.stderr.strip()}")
            out += res.stdout.split() if res.rc == 0 else []
        return out

    def cleanup(self) -> None:
        """Delete everything the demo made and check that nothing is left."""
        # A claim's volume goes with it only when its PV's policy is Delete: a Retain PV
        # (and its Ceph image) would outlive the demo.
        for pv in self._pvs():
            if self._ours(pv) and pv["spec"].get("persistentVolumeReclaimPolicy") != "Delete":
                self.call(
                    [
                        "patch",
                        "persistentvolume",
                        pv["metadata"]["name"],
                        "-p",
                        '{"spec":{"persistentVolumeReclaimPolicy":"Delete"}}',
                    ]
                )
        kept: dict[str, str] = {}
        for step in self.demo.cleanup(self.ctx) if self.demo.cleanup else []:
            self.out(fill([step.say], kept)[0])
            if step.kubectl:
                args = fill(step.kubectl, kept)
                self.out(shown(args))
                res = self.call(args)
                if res.rc != 0 and not step.may_fail and "NotFound" not in res.stderr:
                    raise DemoError(f"cleanup of {self.demo.name}: {res.stderr.strip()}")
                if step.keep:
                    kept.update(step.keep(res, self.ctx))
        ns = self.demo.ns
        self.out(shown(["delete", "namespace", ns, "--ignore-not-found"]))
        res = self.call(
            [
                "delete",
                "namespace",
                ns,
                "--ignore-not-found",
                "--wait",
                f"--timeout={DELETE_TIMEOUT}s",
            ]
        )
        if res.rc != 0:
            raise DemoError(f"deleting namespace {ns} failed: {res.stderr.strip()}")
        selector = f"{LABEL}={self.demo.name}"
        for kind in CLUSTER_KINDS:
            args = ["delete", kind, "-l", selector, "--ignore-not-found", "--wait"]
            self.out(shown(args))
            res = self.call([*args, f"--timeout={DELETE_TIMEOUT}s"])
            if res.rc != 0 and NO_RESOURCE not in res.stderr:
                raise DemoError(f"deleting {kind} {selector} failed: {res.stderr.strip()}")
        deadline = self.clock() + LEFTOVER_WAIT
        left = self.leftovers()
        while left and self.clock() < deadline:
            self.sleep(self.interval)
            left = self.leftovers()
        if left:
            raise DemoError(f"cleanup of {self.demo.name} left: {', '.join(left)}")
        shutil.rmtree(self.workdir, ignore_errors=True)
        self.out(f"Nothing of {self.demo.name} is left (namespace {ns}, its volumes, {selector}).")

    # -------------------------------------------------------------- verify

    def verify(self, record: dict | None = None) -> list[str]:
        """Run the demo's re-runnable checks again, quietly, with the values and the number
        of steps of the recorded run; the problems found."""
        record = record or {}
        self.kept = dict(record.get("kept") or {})
        problems = []
        for step in verify_steps(self.demo, self.ctx, record.get("steps")):
            _, problem = self.until_checked(step, quiet=True)
            if problem:
                problems.append(f"{step.say}: {problem}")
        return problems


# ------------------------------------------------------------------ records


def done_file(state: Path, name: str) -> Path:
    return Path(state) / "demos" / f"{name}.done"


def record_done(state: Path, run: Runner) -> Path:
    """<state>/demos/<name>.done: when, on which lab, how many steps ran, the values they
    kept, and why the demo ended early (or null)."""
    path = done_file(state, run.demo.name)
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "lab": run.ctx.lab,
        "steps": run.done,
        "kept": run.kept,
        "ended": run.ended,
    }
    path.write_text(json.dumps(record, indent=2) + "\n")
    return path


def demos_done(state: Path) -> list[str]:
    return sorted(p.name.removesuffix(".done") for p in (Path(state) / "demos").glob("*.done"))


# ------------------------------------------------------------------ the task


def listing(demos: dict[str, Demo]) -> str:
    """`inv demo --list`: one line per demo: name, minutes, summary."""
    width = max((len(n) for n in demos), default=0)
    return "\n".join(f"{n.ljust(width)}  {d.minutes:>2} min  {d.summary}" for n, d in demos.items())


def run_demo(
    demo: Demo,
    ctx: Context,
    state: Path,
    kubectl: Executor,
    probe: Prober,
    *,
    cleanup: bool = False,
    pause: Callable[[], Any] | None = None,
    out: Callable[[str], None] = print,
) -> None:
    """`inv demo NAME [--cleanup]` on a lab whose inventory gave ctx."""
    run = Runner(
        demo, ctx, kubectl, Path(state) / "demos" / demo.name, out=out, pause=pause, probe=probe
    )
    if cleanup:
        done_file(state, demo.name).unlink(missing_ok=True)
        run.cleanup()
        return
    run.refuse_what_the_lab_lacks()
    done_file(state, demo.name).unlink(missing_ok=True)  # from here, the last run is not done
    run.run()
    record_done(state, run)


def enter_to_continue() -> None:
    input("  [Enter] next step ")


def pause_for(step: bool, interactive: bool | None = None) -> Callable[[], Any] | None:
    """--step: wait for Enter between steps, only where someone can press it."""
    if interactive is None:
        interactive = os.isatty(0)
    return enter_to_continue if step and interactive else None
