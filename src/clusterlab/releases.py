"""The pinned Kubernetes releases: one table, read by the spec and by the Ansible stages.

The table lives in the defaults role's vars (roles/common/clusterlab/vars/main.yml) so that
the playbooks read it as-is; the spec accepts exactly the versions listed there.
"""

from __future__ import annotations

import functools
from typing import Any

import yaml

from clusterlab import paths

TABLE = paths.ROOT / "roles" / "common" / "clusterlab" / "vars" / "main.yml"
DEFAULT_MINOR = 35  # the newest minor whose runtime Debian 12 ships (containerd 1.6)


def _key(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split("."))


@functools.cache
def kube_releases() -> dict[str, dict[str, Any]]:
    """version -> {kubeadm, kubelet, kubectl (sha256), pause, coredns, etcd}, oldest first."""
    data = yaml.safe_load(TABLE.read_text())["clusterlab_kube_releases"] or {}
    return {v: data[v] for v in sorted(data, key=_key)}


def minors() -> tuple[int, ...]:
    return tuple(sorted({_key(v)[1] for v in kube_releases()}))


def newest_patch(minor: int) -> str | None:
    found = [v for v in kube_releases() if _key(v)[1] == minor]
    return found[-1] if found else None


def default_version() -> str:
    return newest_patch(DEFAULT_MINOR) or "1.35"


def releases_markdown() -> str:
    """The pinned releases table for docs/stages.md (a test keeps the two equal)."""
    rows = ["| Kubernetes | pause (sandbox) | crictl | spec default |", "|---|---|---|---|"]
    default = default_version()
    for version, entry in kube_releases().items():
        mark = "yes" if version == default else ""
        rows.append(f"| {version} | {entry['pause']} | {entry['crictl']['version']} | {mark} |")
    return "\n".join(rows)
