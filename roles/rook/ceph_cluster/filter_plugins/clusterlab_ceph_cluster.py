"""Ansible filter over clusterlab.rook: which disks each OSD host gives Ceph.

The controller runs Ansible from the virtualenv clusterlab is installed in, so the package
imports here as in the CLI.
"""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from clusterlab import rook


def clusterlab_ceph_disks(host_disks: dict, device_filter: str = "", sizes: dict | None = None):
    """{host: lab_disks} | clusterlab_ceph_disks(filter, {host: lab_disk_sizes}) ->
    [{host, name, path, size, pv}] (see clusterlab.rook.ceph_disks)."""
    try:
        return rook.ceph_disks(
            {str(h): list(d or []) for h, d in host_disks.items()},
            str(device_filter or ""),
            {str(h): dict(s or {}) for h, s in (sizes or {}).items()},
        )
    except rook.RookError as exc:
        raise AnsibleFilterError(str(exc)) from exc


class FilterModule:
    def filters(self):
        return {"clusterlab_ceph_disks": clusterlab_ceph_disks}
