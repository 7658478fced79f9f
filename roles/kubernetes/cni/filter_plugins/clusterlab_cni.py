"""Ansible filters over clusterlab.cni: the stage and `clusterlab manifests` share one transform.

The controller runs Ansible from the virtualenv clusterlab is installed in, so the package
imports here as in the CLI.
"""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from clusterlab import cni


def clusterlab_cni_manifest(
    text: str,
    plugin: str,
    *,
    pod_cidr: str,
    lab_cidr: str,
    node_addresses: list[str] | None = None,
    cni_bin_dir: str = cni.DEFAULT_CNI_BIN_DIR,
    source: str = "",
) -> str:
    """Upstream manifest text | clusterlab_cni_manifest(plugin, ...) -> the lab's manifest."""
    try:
        return cni.render(
            str(text),
            str(plugin),
            source=str(source),
            pod_cidr=str(pod_cidr),
            lab_cidr=str(lab_cidr),
            node_addresses=[str(a) for a in node_addresses or []],
            cni_bin_dir=str(cni_bin_dir),
        )
    except cni.CniError as exc:
        raise AnsibleFilterError(str(exc)) from exc


def clusterlab_cni_daemonset(plugin: str) -> str:
    """'namespace/name' of the plugin's node DaemonSet."""
    try:
        return cni.daemonset(str(plugin))
    except cni.CniError as exc:
        raise AnsibleFilterError(str(exc)) from exc


class FilterModule:
    def filters(self):
        return {
            "clusterlab_cni_manifest": clusterlab_cni_manifest,
            "clusterlab_cni_daemonset": clusterlab_cni_daemonset,
        }
