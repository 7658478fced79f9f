"""The meetup demos' building blocks: a demo is a list of narrated steps, each of which shows
the command before it runs it, trims the output to what matters, and may check a point.

A demo module (src/clusterlab/demos/<module>.py) defines `DEMO = Demo(...)`. Its manifests are
Jinja templates in src/clusterlab/demos/templates/<name>/*.yaml.j2, rendered by
`render_manifests` from a `Context` (the lab's inventory variables): `inv manifests` writes
exactly what `inv demo` applies (one renderer).
"""

from __future__ import annotations

import string
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2

TEMPLATES = Path(__file__).parent / "templates"
NAMESPACE_PREFIX = "demo-"  # every object a demo makes lives in its own namespace …
LABEL = "clusterlab.io/demo"  # … or, when cluster-scoped (PVs), carries this label = demo name


class DemoError(Exception):
    """A demo cannot run or a check failed; the message says what and why."""


@dataclass(frozen=True)
class Context:
    """What a demo knows of the lab: the inventory's all.vars and its hosts."""

    lab: str
    vars: dict[str, Any]  # inventory all.vars (kube_version, rook_mode, artifacts_image_registry …)
    hosts: list[str]  # node names
    hostvars: dict[str, dict[str, Any]]
    groups: dict[str, list[str]]

    @property
    def registry(self) -> str | None:
        """artifacts.image_registry, or None: images are pinned upstream references."""
        return self.vars.get("artifacts_image_registry") or None

    def image(self, reference: str) -> str:
        """An upstream image reference (docker.io/library/redis:8.2.2 …), moved under the lab's
        mirror registry when one is set (registry/library/redis:8.2.2)."""
        if not self.registry:
            return reference
        path = reference.split("/", 1)[1] if "." in reference.split("/", 1)[0] else reference
        return f"{self.registry.rstrip('/')}/{path}"


@dataclass(frozen=True)
class Result:
    """What one step's command gave."""

    rc: int
    stdout: str
    stderr: str


@dataclass(frozen=True)
class Step:
    """One narrated step.

    say: the narration, shown first.
    kubectl: arguments after `kubectl` (the runner adds the lab's kubeconfig), shown as the
      command before it runs; or None for a step that only applies manifests or says something.
    apply: manifest files of this demo (names under templates/<name>/ without .j2) applied with
      `kubectl apply -f` before `kubectl` runs.
    show: trims the output to what matters (default: all of stdout).
    check: returns None when the point is proven, else the problem (the demo fails with it).
    wait: seconds to retry `kubectl`+`check` until the check passes (0: once).
    may_fail: a non-zero exit is part of the point (e.g. the Multi-Attach error).
    needs: kernel clients this step and every later one need on the nodes (as Demo.needs);
      where one is missing the demo ends here cleanly, naming the nodes (the part before it,
      which did not need it, has run).
    stop: returns None to go on, else the reason the demo ends cleanly after this step (what
      the lab lacks, by name: e.g. the snapshot CRDs), without failing.
    keep: values read from the output (e.g. {"pv": "pvc-1234…"}) for the rest of the run:
      `$name` in later steps' kubectl arguments is replaced by them (see `fill`).
    """

    say: str
    kubectl: list[str] | None = None
    apply: tuple[str, ...] = ()
    show: Callable[[Result], str] | None = None
    check: Callable[[Result, Context], str | None] | None = None
    wait: int = 0
    may_fail: bool = False
    needs: tuple[str, ...] = ()
    stop: Callable[[Result, Context], str | None] | None = None
    keep: Callable[[Result, Context], dict[str, str]] | None = None


def fill(args: list[str], kept: dict[str, str]) -> list[str]:
    """kubectl arguments with `$name` replaced by the values earlier steps kept; anything
    else with a `$` (shell variables inside `kubectl exec … sh -c`) is left as it is."""
    return [string.Template(a).safe_substitute(kept) for a in args]


@dataclass(frozen=True)
class Demo:
    name: str  # as in the spec's demos list and `inv demo NAME`
    summary: str  # one line for `inv demo --list`
    point: str  # the point the demo proves, for README and the closing line
    minutes: int  # how long it takes live
    steps: Callable[[Context], list[Step]]
    needs: tuple[str, ...] = ()  # kernel clients on the nodes: "rbd" (or nbd), "ceph" …
    namespace: str = ""  # default: demo-<name>
    cleanup: Callable[[Context], list[Step]] | None = (
        None  # default: delete namespace + labelled PVs
    )
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ns(self) -> str:
        return self.namespace or NAMESPACE_PREFIX + self.name


def render_manifests(demo: Demo, ctx: Context) -> dict[str, str]:
    """file name (e.g. 'pvc.yaml') -> rendered YAML text, for every template of the demo."""
    folder = TEMPLATES / demo.name
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(folder)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,  # noqa: S701 - YAML, not HTML
    )
    out = {}
    for path in sorted(folder.glob("*.yaml.j2")):
        out[path.name.removesuffix(".j2")] = env.get_template(path.name).render(
            ctx=ctx, demo=demo, ns=demo.ns, label=LABEL, image=ctx.image
        )
    return out
