"""rook-modes: host vs pvc mode, on either kind of lab: what differs in Rook's objects and
where the OSD data lives on the nodes. Reads only (plus one viewing pod); needs no kernel
client."""

from __future__ import annotations

import json

from clusterlab.demos.base import Context, Demo, Result, Step
from clusterlab.demos.statefulset import columns

ROOK_NS = "rook-ceph"
DEVICE_SET = "lab-disks"  # roles/rook/ceph_cluster: ceph_cluster_device_set_name
LOCAL_CLASS = "local-storage"
OSD_VOLUMES = (
    "jsonpath={range .items[*]}{.metadata.name}{'\\t'}{.spec.nodeName}{'\\t'}"
    "{range .spec.volumes[*]}{.persistentVolumeClaim.claimName}{.hostPath.path} {end}{'\\n'}{end}"
)


def mode(ctx: Context) -> str:
    return ctx.vars.get("rook_mode", "host")


def disks(ctx: Context) -> dict[str, list[str]]:
    """node -> its Ceph disks (inventory lab_disks)."""
    return {
        h: list(ctx.hostvars.get(h, {}).get("lab_disks") or [])
        for h in ctx.groups.get("ceph_osd", [])
    }


def osd_count(ctx: Context) -> int:
    return sum(len(d) for d in disks(ctx).values())


def storage_spec(res: Result, ctx: Context) -> str | None:
    try:
        storage = json.loads(res.stdout)
    except ValueError:
        return f"not JSON: {res.stdout[:200]!r}"
    if mode(ctx) == "host":
        if storage.get("storageClassDeviceSets"):
            return "host mode, yet the CephCluster has storageClassDeviceSets"
        named = {
            n["name"]: [d["name"] for d in n.get("devices", [])] for n in storage.get("nodes", [])
        }
        want = {h: [p.removeprefix("/dev/") for p in d] for h, d in disks(ctx).items() if d}
        return None if named == want else f"spec.storage.nodes names {named}, the lab has {want}"
    sets = storage.get("storageClassDeviceSets") or []
    if storage.get("nodes") or not sets:
        return "pvc mode, yet the CephCluster has no storageClassDeviceSets (or lists nodes)"
    return (
        None
        if sum(s.get("count", 0) for s in sets) == osd_count(ctx)
        else (
            f"device sets ask for {[s.get('count') for s in sets]} OSDs, the lab has {osd_count(ctx)} disks"
        )
    )


def local_pvs(res: Result, ctx: Context) -> str | None:
    rows = [r for r in columns(res.stdout) if r.get("CLASS") == LOCAL_CLASS]
    if mode(ctx) == "host":
        return None if not rows else f"host mode, yet {len(rows)} {LOCAL_CLASS} PVs exist"
    if ctx.vars.get("rook_storage_class"):
        return None  # the lab names its own block class: no local PVs of ours
    if len(rows) != osd_count(ctx):
        return f"{len(rows)} {LOCAL_CLASS} PVs, the lab has {osd_count(ctx)} Ceph disks"
    unbound = [r["NAME"] for r in rows if r.get("CLAIM", "<none>") == "<none>"]
    return None if not unbound else f"PVs not claimed by an OSD: {unbound}"


def osd_volumes(res: Result, ctx: Context) -> str | None:
    lines = [x.split("\t") for x in res.stdout.splitlines() if x.strip()]
    if len(lines) != osd_count(ctx):
        return f"{len(lines)} OSD pods, the lab has {osd_count(ctx)} Ceph disks"
    for name, _node, vols in lines:
        on_pvc = any(v.startswith(DEVICE_SET) for v in vols.split())
        if (mode(ctx) == "pvc") != on_pvc:
            return (
                f"{name}: {'a' if on_pvc else 'no'} PVC volume in {mode(ctx)} mode ({vols.strip()})"
            )
    return None


def osd_metadata(res: Result, ctx: Context) -> str | None:
    try:
        osds = json.loads(res.stdout)
    except ValueError:
        return f"not JSON: {res.stdout[:200]!r}"
    if len(osds) != osd_count(ctx):
        return f"{len(osds)} OSDs in ceph osd metadata, the lab has {osd_count(ctx)} Ceph disks"
    missing = [o.get("id") for o in osds if not o.get("bluestore_bdev_dev_node")]
    return None if not missing else f"OSDs without a block device: {missing}"


def show_metadata(res: Result) -> str:
    try:
        osds = json.loads(res.stdout)
    except ValueError:
        return res.stdout
    keys = ("id", "hostname", "devices", "bluestore_bdev_dev_node", "osd_data")
    return "\n".join("  ".join(f"{k}={o.get(k)}" for k in keys) for o in osds)


def node_dirs(res: Result, ctx: Context) -> str | None:
    """Mons keep their store under dataDirHostPath in both modes; in host mode the OSDs'
    own directories (whoami) are there too."""
    if "/mon-" not in res.stdout:
        return "no mon-* directory under the node's Rook data dir"
    if mode(ctx) == "host" and "whoami" not in res.stdout:
        return "host mode, yet no OSD directory (whoami) on the node"
    return None


def steps(ctx: Context) -> list[Step]:
    other = "pvc" if mode(ctx) == "host" else "host"
    root = ctx.vars.get("rook_data_dir_host_path", "/var/lib/rook")
    return [
        Step(
            say=f"This lab runs Rook in {mode(ctx)} mode. Host mode: the CephCluster names "
            "nodes and their raw disks, OSDs use them through hostPath. PVC mode: "
            "storageClassDeviceSets ask a block StorageClass for PVCs (here static local PVs "
            f"of the same disks), OSD pods mount them. We look at ours and name the {other} "
            "mode's counterpart at each step.",
            kubectl=[
                "-n",
                ROOK_NS,
                "get",
                "cephcluster",
                "rook-ceph",
                "-o",
                "jsonpath={.spec.storage}",
            ],
            show=lambda res: (
                json.dumps(json.loads(res.stdout), indent=2) if res.stdout.strip() else ""
            ),
            check=storage_spec,
        ),
        Step(
            say=f"PVs of class {LOCAL_CLASS}: pvc mode only (one per disk, pinned to its node).",
            kubectl=[
                "get",
                "pv",
                "-o",
                "custom-columns=NAME:.metadata.name,"
                "CLASS:.spec.storageClassName,PATH:.spec.local.path,"
                "CLAIM:.spec.claimRef.name",
            ],
            check=local_pvs,
        ),
        Step(
            say="OSD pods and their volumes: a PVC (pvc mode) or only hostPaths (host mode).",
            kubectl=["-n", ROOK_NS, "get", "pods", "-l", "app=rook-ceph-osd", "-o", OSD_VOLUMES],
            check=osd_volumes,
        ),
        Step(
            say="Ceph's view: each OSD's host and block device.",
            kubectl=[
                "-n",
                ROOK_NS,
                "exec",
                "deploy/rook-ceph-tools",
                "--",
                "ceph",
                "osd",
                "metadata",
                "-f",
                "json",
            ],
            show=show_metadata,
            check=osd_metadata,
        ),
        Step(
            say=f"On a node: {root} (a read-only hostPath view).",
            apply=("namespace.yaml", "node-view.yaml"),
            kubectl=[
                "-n",
                DEMO.ns,
                "wait",
                "--for=condition=Ready",
                "pod/node-view",
                "--timeout=30s",
            ],
            wait=180,
        ),
        Step(
            say=f"mon stores live in {root} in both modes; OSD directories too in host mode.",
            kubectl=[
                "-n",
                DEMO.ns,
                "exec",
                "node-view",
                "--",
                "find",
                f"/host{root}",
                "-maxdepth",
                "3",
            ],
            check=node_dirs,
        ),
    ]


DEMO = Demo(
    name="rook-modes",
    summary="Rook host vs pvc mode: which objects differ and where OSD data lives on the nodes",
    point="Host mode hands raw node disks to OSDs by name; pvc mode claims the same disks "
    "through a block StorageClass, so OSDs are PVC-backed pods.",
    minutes=5,
    steps=steps,
)
