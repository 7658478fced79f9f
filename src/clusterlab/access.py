"""Access to a lab's cluster from the controller: its kubeconfig and a checksummed kubectl."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from clusterlab import ansible, paths, progname, releases
from clusterlab.providers import ProviderError

TOOLS_PLAYBOOK = "controller-tools.yml"


def kubeconfig_path(spec: dict) -> Path:
    path = paths.state_dir(spec["name"]) / "kubeconfig"
    if not path.exists():
        raise ProviderError(
            f"lab {spec['name']} has no kubeconfig ({path}): the kubernetes stage has not "
            f"completed; run `{progname.cmd('up --lab ' + spec['name'])}`"
        )
    return path


def kubectl_path(spec: dict) -> Path:
    """Where the download mechanism caches kubectl of the lab's version on the controller."""
    return paths.cached_download(spec, "kubectl", spec["kubernetes"]["version"], "kubectl")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def ensure_kubectl(spec: dict) -> Path:
    """The cached kubectl, fetched through the download mechanism when missing; sha256 checked."""
    path = kubectl_path(spec)
    want = releases.kube_releases()[spec["kubernetes"]["version"]]["kubectl"]
    if not path.exists():
        inv = paths.state_dir(spec["name"]) / "hosts.yml"
        log = paths.state_dir(spec["name"]) / "logs" / "controller-tools.log"
        ansible.run_playbook(paths.PLAYBOOKS / TOOLS_PLAYBOOK, inv, log)
    if _sha256(path) != want:
        raise ProviderError(f"{path} does not match its pinned sha256 {want}; delete it")
    return path


def kubectl_command(spec: dict, args: list[str]) -> list[str]:
    config = kubeconfig_path(spec)
    return [str(ensure_kubectl(spec)), "--kubeconfig", str(config), *args]


def kubectl_env(spec: dict) -> dict[str, str]:
    env = dict(os.environ)
    env["KUBECONFIG"] = str(kubeconfig_path(spec))
    return env


ROOK_NAMESPACE = "rook-ceph"
TOOLBOX = "deploy/rook-ceph-tools"


def toolbox_exec(ceph_args: list[str]) -> list[str]:
    """kubectl arguments that run `ceph ARGS` in the Rook toolbox."""
    return ["-n", ROOK_NAMESPACE, "exec", TOOLBOX, "--", "ceph", *ceph_args]
