"""The lab spec reference: docs/spec.md and `clusterlab spec --reference`, made from spec.FIELDS
(a test keeps docs/spec.md equal to document())."""

from __future__ import annotations

from clusterlab.spec import reference_markdown

INTRO = """\
# Lab spec reference

A lab is one file, `inventories/<lab>/lab.yml`. `clusterlab init NAME [--from EXAMPLE]`
writes a commented one; `clusterlab spec --lab NAME` validates it and prints it with every
default; this page is also printed by `clusterlab spec --reference`.

`nodes` is either an explicit list (`nodes[]` fields) or the count form (`nodes.` fields):
`count: 3` expands to `node1`…`node3`; the first node is the control plane, every node is a
worker. A lab has **one control plane**, with etcd stacked on it (kubeadm's local etcd): the
`etcd` role is implied by `control_plane` and refused without it. Several control planes
would need an HA API endpoint (kube-vip or a load balancer), which clusterlab does not build:
a spec asking for more is refused with that reason rather than given a fragile cluster.
Kubespray defaults apply to pod and service networks.
"""

CHECKS = """\
Checks beyond types: unknown keys are refused (with a did-you-mean); node names and
addresses are unique and addresses lie inside `network.cidr` (not its gateway `.1`); the
cidr is private and a /24 or smaller — on static labs too: there `network.cidr` is the
nodes' real network, so the pod and service networks cannot overlap it; exactly one control
plane (etcd stacked on it); pod and service networks overlap neither each other, nor the
lab's network, nor a Vagrant VM's management network (192.168.121.0/24 libvirt, 10.0.2.0/24
VirtualBox); `kubernetes.version` is a pinned release; Ceph data disks are at least 5G;
host mode needs a node with a data disk, PVC mode needs data disks or `rook.storage_class`;
`rook.mon_count` ≤ nodes unless `rook.allow_multiple_per_node`; `rook.replica_size` ≤ OSD
hosts; the os runs on the chosen provider (local: Debian family); static nodes carry
`address`, `user` and disk `device`s.

A bad spec is refused before anything is created, one problem per line, exit 2:

```
$ clusterlab spec --file lab.yml
nodes[0].rols: unknown key; did you mean 'roles'? (allowed: name, roles, cpus, …)
rook.mode: 'hots' is not supported; did you mean 'host'? (allowed: host, pvc)
```

Ansible variables derived from the spec (`kube_version`, `kube_network_plugin`,
`rook_mode`, …) can be overridden Kubespray-style in `inventories/<lab>/group_vars/`;
those files win.
"""


def document() -> str:
    """The whole reference page: what docs/spec.md holds."""
    return f"{INTRO}\n## Fields\n\n{reference_markdown()}\n\n## Checks\n\n{CHECKS}"
