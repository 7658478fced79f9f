"""csi: CSI's anatomy as it runs, one claim followed through it, expansion, snapshot+restore."""

from __future__ import annotations

import json

from clusterlab import progname
from clusterlab.demos.base import Context, Demo, Result, Step
from clusterlab.demos.kubeout import mount_of, table

NAME = "csi"
NS = "demo-csi"
ROOK_NS = "rook-ceph"
RBD = "rook-ceph.rbd.csi.ceph.com"
CEPHFS = "rook-ceph.cephfs.csi.ceph.com"
DRIVERS = (RBD, CEPHFS)
SIDECARS = ("csi-provisioner", "csi-attacher", "csi-resizer", "csi-snapshotter")
SNAPSHOT_CRDS = (
    "volumesnapshotclasses.snapshot.storage.k8s.io",
    "volumesnapshots.snapshot.storage.k8s.io",
    "volumesnapshotcontents.snapshot.storage.k8s.io",
)
WORKLOAD_COLUMNS = (
    "custom-columns=NAME:.metadata.name,CONTAINERS:.spec.template.spec.containers[*].name"
)


def rows_named(r: Result, suffix: str) -> dict[str, dict[str, str]]:
    return {row["NAME"]: row for row in table(r.stdout) if row["NAME"].endswith(suffix)}


def show_rows(suffix: str):
    def show(r: Result) -> str:
        lines = r.stdout.splitlines()
        return "\n".join(lines[:1] + [ln for ln in lines[1:] if ln.split()[0].endswith(suffix)])

    return show


def csidrivers(r: Result, ctx: Context) -> str | None:
    names = {row["NAME"] for row in table(r.stdout)}
    missing = [d for d in DRIVERS if d not in names]
    return f"no CSIDriver {', '.join(missing)}" if missing else None


def controller_plugins(r: Result, ctx: Context) -> str | None:
    rows = rows_named(r, "-ctrlplugin")
    sidecars: set[str] = set()
    for driver in DRIVERS:
        row = rows.get(f"{driver}-ctrlplugin")
        if row is None:
            return f"no Deployment {driver}-ctrlplugin in {ROOK_NS}"
        containers = set(row["CONTAINERS"].split(","))
        if "csi-provisioner" not in containers:
            return f"{driver}-ctrlplugin has no csi-provisioner"
        sidecars |= containers
    missing = [s for s in SIDECARS if s not in sidecars]
    return f"no controller plugin runs {', '.join(missing)}" if missing else None


def node_plugins(r: Result, ctx: Context) -> str | None:
    rows = rows_named(r, "-nodeplugin")
    for driver in DRIVERS:
        row = rows.get(f"{driver}-nodeplugin")
        if row is None:
            return f"no DaemonSet {driver}-nodeplugin in {ROOK_NS}"
        if not any("registrar" in c for c in row["CONTAINERS"].split(",")):
            return f"{driver}-nodeplugin has no registrar container"
        if row["READY"] != str(len(ctx.hosts)):
            return f"{driver}-nodeplugin is ready on {row['READY']} nodes, not {len(ctx.hosts)}"
    return None


def registered(r: Result, ctx: Context) -> str | None:
    rows = {row["NODE"]: row for row in table(r.stdout)}
    for node in ctx.hosts:
        drivers = set(rows.get(node, {}).get("DRIVERS", "").split(","))
        missing = [d for d in DRIVERS if d not in drivers]
        if missing:
            return f"{node} has not registered {', '.join(missing)}"
    return None


def provisioned(r: Result, ctx: Context) -> str | None:
    reasons = {row["REASON"] for row in table(r.stdout)}
    return None if "ProvisioningSucceeded" in reasons else "no ProvisioningSucceeded event yet"


def followed_pv(r: Result, ctx: Context) -> str | None:
    for row in table(r.stdout):
        if (row["CLAIMNS"], row["CLAIM"]) == (NS, "follow"):
            if row["DRIVER"] != CEPHFS:
                return f"the PV's driver is {row['DRIVER']}, not {CEPHFS}"
            if row["HANDLE"] in ("", "<none>"):
                return "the PV has no csi.volumeHandle"
            return None
    return "no PV is bound to the claim follow"


def attached(r: Result, ctx: Context) -> str | None:
    rows = table(r.stdout)
    claim = [
        x
        for x in rows
        if (x["KIND"], x["NAMESPACE"], x["NAME"]) == ("PersistentVolumeClaim", NS, "follow")
    ]
    driver = [x for x in rows if (x["KIND"], x["NAME"]) == ("CSIDriver", CEPHFS)]
    if not claim or not driver:
        return "the claim follow or the CSIDriver of CephFS is missing"
    if driver[0]["ATTACHREQ"] != "true":
        return None  # no attach phase for this driver: kubelet stages and mounts directly
    volume = claim[0]["VOLUME"]
    for x in rows:
        if x["KIND"] == "VolumeAttachment" and x["PV"] == volume:
            return None if x["ATTACHED"] == "true" else f"{x['NAME']} is not attached yet"
    return f"no VolumeAttachment for {volume}"


def show_attach(r: Result) -> str:
    lines = r.stdout.splitlines()
    keep = [
        ln
        for ln in lines[1:]
        if ln.startswith(("VolumeAttachment", "CSIDriver")) or f" {NS} " in ln
    ]
    return "\n".join(lines[:1] + keep)


def mounted(r: Result, ctx: Context) -> str | None:
    found = mount_of(r.stdout, "/data")
    if found is None:
        return "nothing is mounted at /data in follower"
    return None if found[1] in ("ceph", "fuse.ceph-fuse") else f"/data is {found[1]}, not CephFS"


def expanded(r: Result, ctx: Context) -> str | None:
    rows = table(r.stdout)
    size = rows[0]["CAPACITY"] if rows else "?"
    return None if size == "2Gi" else f"the claim's capacity is {size}, not 2Gi yet"


def missing_crds(r: Result, ctx: Context) -> str | None:
    have = {
        line.strip().removeprefix("customresourcedefinition.apiextensions.k8s.io/")
        for line in r.stdout.splitlines()
    }
    missing = [c for c in SNAPSHOT_CRDS if c not in have]
    if not missing:
        return None
    return (
        f"the snapshot CRDs {', '.join(missing)} are not installed: snapshots need the "
        "external-snapshotter's CRDs and its snapshot-controller, which the Rook stage "
        f"installs (a lab built before it did: run `{progname.cmd('up')}` again)"
    )


def snapshot_ready(r: Result, ctx: Context) -> str | None:
    rows = table(r.stdout)
    if rows and rows[0]["READY"] == "true":
        return None
    return "follow-snap is not readyToUse (is the snapshot-controller running?)"


def restored(r: Result, ctx: Context) -> str | None:
    text = r.stdout.strip()
    return None if text == "before the snapshot" else f"the restored file says {text!r}"


def steps(ctx: Context) -> list[Step]:
    ex = ["-n", NS, "exec", "follower", "--"]
    grow = json.dumps({"spec": {"resources": {"requests": {"storage": "2Gi"}}}})
    return [
        Step(
            say="A CSIDriver object per driver: its name is the provisioner a StorageClass "
            "names; attachRequired says whether Kubernetes runs an attach phase.",
            kubectl=[
                "get",
                "csidrivers",
                "-o",
                "custom-columns=NAME:.metadata.name,ATTACHREQ:.spec.attachRequired,"
                "PODINFO:.spec.podInfoOnMount,FSGROUP:.spec.fsGroupPolicy",
            ],
            check=csidrivers,
        ),
        Step(
            say="The controller plugin: a Deployment per driver, the Ceph plugin plus "
            "Kubernetes sidecars watching the API (provisioner, attacher, resizer, "
            "snapshotter) and calling the plugin over a socket.",
            kubectl=["-n", ROOK_NS, "get", "deployments", "-o", WORKLOAD_COLUMNS],
            show=show_rows("-ctrlplugin"),
            check=controller_plugins,
        ),
        Step(
            say="The node plugin: a DaemonSet per driver, on every node; its registrar "
            "tells the kubelet where the driver's socket is.",
            kubectl=[
                "-n",
                ROOK_NS,
                "get",
                "daemonsets",
                "-o",
                "custom-columns=NAME:.metadata.name,READY:.status.numberReady,"
                "CONTAINERS:.spec.template.spec.containers[*].name",
            ],
            show=show_rows("-nodeplugin"),
            check=node_plugins,
        ),
        Step(
            say="What the registrars did: every node's CSINode lists both drivers.",
            kubectl=[
                "get",
                "csinodes",
                "-o",
                "custom-columns=NODE:.metadata.name,DRIVERS:.spec.drivers[*].name",
            ],
            check=registered,
        ),
        Step(
            say="Follow one claim: a CephFS PVC and a pod using it.",
            apply=("namespace.yaml", "follow.yaml"),
            kubectl=["-n", NS, "wait", "--for=condition=Ready", "pod/follower", "--timeout=300s"],
        ),
        Step(
            say="Provision: csi-provisioner saw the claim and called CreateVolume.",
            kubectl=[
                "-n",
                NS,
                "get",
                "events",
                "--field-selector",
                "involvedObject.kind=PersistentVolumeClaim,involvedObject.name=follow",
                "-o",
                "custom-columns=REASON:.reason,FROM:.source.component,MESSAGE:.message",
            ],
            check=provisioned,
            wait=30,
        ),
        Step(
            say="The PV it made: the driver and the volumeHandle, Ceph's name for the volume.",
            kubectl=[
                "get",
                "pv",
                "-o",
                "custom-columns=NAME:.metadata.name,CLAIMNS:.spec.claimRef.namespace,"
                "CLAIM:.spec.claimRef.name,DRIVER:.spec.csi.driver,"
                "HANDLE:.spec.csi.volumeHandle",
            ],
            show=lambda r: "\n".join(
                ln for i, ln in enumerate(r.stdout.splitlines()) if i == 0 or f" {NS} " in ln
            ),
            check=followed_pv,
        ),
        Step(
            say="Attach: a VolumeAttachment (node + PV) the attacher sidecar acts on - for "
            "drivers whose CSIDriver says attachRequired.",
            kubectl=[
                "get",
                "pvc,volumeattachments,csidrivers",
                "-A",
                "-o",
                "custom-columns=KIND:.kind,NAMESPACE:.metadata.namespace,"
                "NAME:.metadata.name,VOLUME:.spec.volumeName,"
                "ATTACHREQ:.spec.attachRequired,PV:.spec.source.persistentVolumeName,"
                "NODE:.spec.nodeName,ATTACHED:.status.attached",
            ],
            show=show_attach,
            check=attached,
        ),
        Step(
            say="Mount: the node plugin staged the volume on the node and the kubelet "
            "bind-mounted it into the pod.",
            kubectl=[
                *ex,
                "sh",
                "-c",
                "grep ' /data ' /proc/mounts; df -h /data; "
                "echo 'before the snapshot' > /data/marker.txt",
            ],
            check=mounted,
        ),
        Step(
            say="Expansion: ask for 2Gi; csi-resizer calls ControllerExpandVolume.",
            kubectl=["-n", NS, "patch", "pvc", "follow", "-p", grow],
        ),
        Step(
            say="The claim's capacity follows once the resize is done.",
            kubectl=[
                "-n",
                NS,
                "get",
                "pvc",
                "follow",
                "-o",
                "custom-columns=REQUEST:.spec.resources.requests.storage,"
                "CAPACITY:.status.capacity.storage",
            ],
            check=expanded,
            wait=120,
        ),
        Step(
            say="Seen from the pod (CephFS enforces the size as a quota).",
            kubectl=[*ex, "df", "-h", "/data"],
        ),
        Step(
            say="Snapshots are an add-on: the VolumeSnapshot CRDs and the snapshot-controller "
            "come from the external-snapshotter project (the Rook stage installs them).",
            kubectl=["get", "crd", *SNAPSHOT_CRDS, "-o", "name", "--ignore-not-found"],
            stop=missing_crds,
            may_fail=True,
        ),
        Step(
            say="A snapshot class for the CephFS driver and a snapshot of the claim; "
            "csi-snapshotter calls CreateSnapshot.",
            apply=("snapshot.yaml",),
            kubectl=[
                "-n",
                NS,
                "get",
                "volumesnapshot",
                "follow-snap",
                "-o",
                "custom-columns=READY:.status.readyToUse,SIZE:.status.restoreSize,"
                "CONTENT:.status.boundVolumeSnapshotContentName",
            ],
            check=snapshot_ready,
            wait=120,
        ),
        Step(
            say="Change the file after the snapshot.",
            kubectl=[*ex, "sh", "-c", "echo 'after the snapshot' > /data/marker.txt"],
        ),
        Step(
            say="Restore: a new claim whose dataSource is the snapshot.",
            apply=("restore.yaml",),
            kubectl=["-n", NS, "wait", "--for=condition=Ready", "pod/restorer", "--timeout=300s"],
        ),
        Step(
            say="The restored volume holds the file as it was at the snapshot.",
            kubectl=["-n", NS, "exec", "restorer", "--", "cat", "/data/marker.txt"],
            check=restored,
        ),
    ]


DEMO = Demo(
    name=NAME,
    summary="CSI's anatomy: drivers, controller and node plugins; one PVC from provision to "
    "mount; expansion; snapshot and restore",
    point="a claim becomes a volume through CSI calls made by sidecars (provision, attach, "
    "mount, expand, snapshot) - Kubernetes itself knows nothing about Ceph",
    minutes=8,
    steps=steps,
)
