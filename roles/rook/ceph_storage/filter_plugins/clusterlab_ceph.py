"""Ansible filters over clusterlab.cephclient and clusterlab.cephstatus: the stage, `clusterlab
manifests` and the verify layer share one probe, one mounter choice and one status parser.

The controller runs Ansible from the virtualenv clusterlab is installed in, so the package
imports here as in the CLI.
"""

from __future__ import annotations

import json

from ansible.errors import AnsibleFilterError

from clusterlab import cephclient, cephstatus, hostkernel


def clusterlab_ceph_probe_script(shared_kernel: bool) -> str:
    """Shell that prints `<feature> yes|no` for rbd, nbd and ceph on a node."""
    return cephclient.probe_script(bool(shared_kernel))


def clusterlab_ceph_probe_parse(text: str) -> dict[str, bool]:
    return cephclient.parse_probe(str(text))


def clusterlab_ceph_assumed_features(nodes: list[str], shared_kernel: bool) -> dict:
    """Kernel features per node when the nodes are not probed (`clusterlab manifests`): this
    host's kernel for nodes sharing it, else what an own kernel is assumed to offer."""
    features = (
        hostkernel.ceph_client_features()
        if bool(shared_kernel)
        else dict(cephclient.OWN_KERNEL_ASSUMED)
    )
    return {str(n): dict(features) for n in nodes}


def clusterlab_ceph_mounters(features: dict) -> dict:
    try:
        return cephclient.choose({str(k): dict(v) for k, v in dict(features).items()})
    except ValueError as exc:
        raise AnsibleFilterError(f"clusterlab_ceph_mounters: {exc}") from exc


def clusterlab_ceph_status_missing(text: str, mons: int, osds: int) -> list[str]:
    """`ceph status -f json` text -> what the cluster lacks against mons and OSDs, or why the
    text could not be read."""
    try:
        summary = cephstatus.summarize(json.loads(str(text)))
    except (ValueError, cephstatus.CephStatusError) as exc:
        return [f"no readable `ceph status` ({exc})"]
    return cephstatus.missing(summary, mons=int(mons), osds=int(osds))


class FilterModule:
    def filters(self):
        return {
            "clusterlab_ceph_probe_script": clusterlab_ceph_probe_script,
            "clusterlab_ceph_probe_parse": clusterlab_ceph_probe_parse,
            "clusterlab_ceph_assumed_features": clusterlab_ceph_assumed_features,
            "clusterlab_ceph_mounters": clusterlab_ceph_mounters,
            "clusterlab_ceph_status_missing": clusterlab_ceph_status_missing,
        }
