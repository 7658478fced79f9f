"""The Ceph kernel clients a lab's nodes offer, and the CSI mounters chosen from them.

ceph-csi maps RBD images with the kernel's `rbd` module (mounter `rbd`, the default) or
with `rbd-nbd` through the `nbd` module, and mounts CephFS with the kernel's `ceph` module
or with ceph-fuse (mounter `fuse`, which needs only /dev/fuse). One StorageClass serves
every node, so one mounter is chosen per class:
- CephFS: `fuse` as soon as one node lacks the `ceph` filesystem (ceph-csi would try the
  kernel client wherever `mount.ceph` exists, without checking for the module), else `kernel`.
- RBD: the mounter that works on more nodes (`rbd` on a tie, ceph-csi's default); the
  nodes where it cannot work are named, never hidden: the class exists, but a pod there
  with such a volume stays in ContainerCreating.

A node with its own kernel counts a module it can load (`modprobe -n`); a node sharing the
controller's kernel (the local provider) cannot load modules, so only what is loaded or
built in counts.
"""

from __future__ import annotations

FEATURES = ("rbd", "nbd", "ceph")

# feature -> shell test true when the kernel has it now (loaded or built in)
_LIVE = {
    "rbd": "test -d /sys/bus/rbd",
    "nbd": "test -d /sys/module/nbd",
    "ceph": "grep -qw ceph /proc/filesystems",
}
# For own kernels, assumed when nothing was probed (`clusterlab manifests`): the prepare stage
# loads rbd and fails without it; the ceph module ships with every supported OS's kernel.
OWN_KERNEL_ASSUMED = {"rbd": True, "nbd": False, "ceph": True}
# The probe runs without root, whose PATH lacks the sbin directories (Debian's and RHEL's
# login PATH for users): modprobe by path. /sbin/modprobe exists on every supported OS (kmod
# installs it there; usr-merged systems link /sbin to /usr/sbin: Debian 12, RHEL 9, Flatcar).
MODPROBE = "/sbin/modprobe"


def probe_script(shared_kernel: bool) -> str:
    """POSIX shell printing `<feature> yes|no` per feature, for a node (or the host)."""
    lines = []
    for name in FEATURES:
        test = _LIVE[name]
        if not shared_kernel:
            test += f" || {MODPROBE} -n -q {name} 2>/dev/null"
        lines.append(f'if {test}; then echo "{name} yes"; else echo "{name} no"; fi')
    return "\n".join(lines) + "\n"


def parse_probe(text: str) -> dict[str, bool]:
    """probe_script's output -> {feature: available}; a feature it did not report is absent."""
    seen = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] in FEATURES and parts[1] in ("yes", "no"):
            seen[parts[0]] = parts[1] == "yes"
    return {name: seen.get(name, False) for name in FEATURES}


def _nodes(names: list[str]) -> str:
    return ", ".join(names)


def choose(features: dict[str, dict[str, bool]]) -> dict:
    """{node: {rbd, nbd, ceph}} -> the mounters and the nodes they cannot serve.

    Keys: rbd_mounter (rbd | rbd-nbd), rbd_nodes (nodes that can map the class's volumes),
    rbd_unusable (the others), cephfs_mounter (kernel | fuse), cephfs_fuse_nodes (nodes
    without the ceph module: the reason for fuse), warnings (sentences naming nodes).
    """
    if not features:
        raise ValueError("no nodes")
    nodes = sorted(features)
    krbd = [n for n in nodes if features[n].get("rbd")]
    nbd = [n for n in nodes if features[n].get("nbd")]
    rbd_mounter = "rbd-nbd" if len(nbd) > len(krbd) else "rbd"
    able = nbd if rbd_mounter == "rbd-nbd" else krbd
    unusable = [n for n in nodes if n not in able]
    no_ceph = [n for n in nodes if not features[n].get("ceph")]
    warnings = []
    neither = [n for n in unusable if n not in krbd and n not in nbd]
    other = [n for n in unusable if n not in neither]
    if neither:
        warnings.append(
            f"RBD: {_nodes(neither)}: the kernel has neither the rbd nor the nbd module, so "
            "volumes of the block StorageClass cannot be mapped there (a pod using one stays "
            "ContainerCreating)"
        )
    if other:
        module = "nbd" if rbd_mounter == "rbd-nbd" else "rbd"
        warnings.append(
            f"RBD: {_nodes(other)}: the kernel lacks the {module} module the block "
            f"StorageClass's mounter ({rbd_mounter}) needs, so its volumes cannot be mapped there"
        )
    return {
        "rbd_mounter": rbd_mounter,
        "rbd_nodes": able,
        "rbd_unusable": unusable,
        "cephfs_mounter": "fuse" if no_ceph else "kernel",
        "cephfs_fuse_nodes": no_ceph,
        "warnings": warnings,
    }
