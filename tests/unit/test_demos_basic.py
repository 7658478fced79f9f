"""The storage-types, pv-pvc, access-modes and csi demos: their manifests for the meetup and
default labs, and each check on outputs shaped like kubectl's (no cluster here: the texts
below are written in the format the named kubectl command prints, not recorded)."""

from __future__ import annotations

import pytest
import rookschema
import yaml
from test_cni import validate_all

from clusterlab import inventory, paths
from clusterlab.demos import access_modes, csi, pv_pvc, storage_types
from clusterlab.demos.base import LABEL, NAMESPACE_PREFIX, Context, Result, fill, render_manifests
from clusterlab.providers import get_provider
from clusterlab.spec import load_spec_file

pytestmark = pytest.mark.unit

DEMOS = [storage_types.DEMO, pv_pvc.DEMO, access_modes.DEMO, csi.DEMO]
LABS = ["meetup-host", "default"]


def context(lab: str) -> Context:
    spec = load_spec_file(paths.lab_spec_file(lab))
    inv = inventory.render(spec, get_provider(spec).planned_connections())["all"]
    groups = {g: list(v.get("hosts") or {}) for g, v in inv["children"].items() if "hosts" in v}
    return Context(
        lab=lab, vars=inv["vars"], hosts=list(inv["hosts"]), hostvars=inv["hosts"], groups=groups
    )


def ok(stdout: str, rc: int = 0) -> Result:
    return Result(rc=rc, stdout=stdout, stderr="")


@pytest.fixture(scope="module")
def ctx() -> Context:
    return context("meetup-host")


# ---------------------------------------------------------------- manifests


def docs_of(demo, ctx: Context) -> list[dict]:
    return [
        d for text in render_manifests(demo, ctx).values() for d in yaml.safe_load_all(text) if d
    ]


def snapshot_shape(doc: dict) -> list[str]:
    """VolumeSnapshot(Class) checked by hand: their CRDs (external-snapshotter) are not in
    Kubernetes' schemas nor in Rook's, and no copy of them is kept here."""
    if doc["kind"] == "VolumeSnapshotClass":
        want = {"apiVersion", "kind", "metadata", "driver", "deletionPolicy", "parameters"}
        bad = set(doc) - want or (doc["deletionPolicy"] not in ("Delete", "Retain"))
        return [f"VolumeSnapshotClass: {bad}"] if bad else []
    spec = doc["spec"]
    if set(spec) - {"volumeSnapshotClassName", "source"} or list(spec["source"]) not in (
        ["persistentVolumeClaimName"],
        ["volumeSnapshotContentName"],
    ):
        return [f"VolumeSnapshot spec: {spec}"]
    return []


def obc_problems(doc: dict) -> list[str]:
    """An ObjectBucketClaim against Rook's pinned CRD schema. That schema declares only spec
    and status (not apiVersion, kind, metadata, which the API server always accepts), so the
    strict validator sees spec alone and metadata is checked by hand."""
    strict = rookschema.validators()[(doc["apiVersion"], doc["kind"])]
    out = [e.message for e in strict.iter_errors({"spec": doc["spec"]})]
    if set(doc) != {"apiVersion", "kind", "metadata", "spec"}:
        out.append(f"top-level keys {sorted(doc)}")
    if set(doc["metadata"]) != {"name", "namespace"}:
        out.append(f"metadata keys {sorted(doc['metadata'])}")
    return out


def test_obc_check_finds_what_the_schema_refuses(ctx):
    (obc,) = [d for d in docs_of(storage_types.DEMO, ctx) if d["kind"] == "ObjectBucketClaim"]
    assert obc["spec"]["storageClassName"] == "rook-ceph-bucket"
    assert obc_problems({**obc, "spec": {**obc["spec"], "storageClass": "x"}})
    assert obc_problems({**obc, "spec": {**obc["spec"], "bucketName": 3}})
    assert obc_problems({**obc, "metadata": {**obc["metadata"], "lables": {}}})


@pytest.mark.parametrize("lab", LABS)
@pytest.mark.parametrize("demo", DEMOS, ids=lambda d: d.name)
def test_manifests_validate_at_the_lab_minor(demo, lab):
    c = context(lab)
    docs = docs_of(demo, c)
    core = [
        d
        for d in docs
        if "." not in d["apiVersion"].split("/")[0]
        or (d["apiVersion"].split("/")[0].endswith("k8s.io") and "snapshot" not in d["apiVersion"])
    ]
    validate_all(core, c.vars["kube_version"])
    for d in docs:
        if d["apiVersion"].startswith("objectbucket.io/"):
            assert obc_problems(d) == []
        elif d["apiVersion"].startswith("snapshot.storage.k8s.io/"):
            assert snapshot_shape(d) == []
        else:
            assert d in core


@pytest.mark.parametrize("demo", DEMOS, ids=lambda d: d.name)
def test_objects_live_in_the_namespace_or_carry_the_label(demo, ctx):
    for d in docs_of(demo, ctx):
        meta = d["metadata"]
        if d["kind"] in ("Namespace", "VolumeSnapshotClass", "StorageClass", "PersistentVolume"):
            assert meta["labels"][LABEL] == demo.name, d["kind"]
        else:
            assert meta["namespace"] == NAMESPACE_PREFIX + demo.name, d["kind"]
    assert demo.ns == NAMESPACE_PREFIX + demo.name


def test_images_follow_the_lab_registry(ctx):
    mirrored = Context(
        lab=ctx.lab,
        vars={**ctx.vars, "artifacts_image_registry": "registry.lab:5000"},
        hosts=ctx.hosts,
        hostvars=ctx.hostvars,
        groups=ctx.groups,
    )
    images = [
        c["image"]
        for demo in DEMOS
        for d in docs_of(demo, mirrored)
        if d["kind"] == "Pod"
        for c in d["spec"]["containers"]
    ]
    assert "registry.lab:5000/rook/ceph:v1.20.6" in images
    assert set(images) == {
        "registry.lab:5000/rook/ceph:v1.20.6",
        "registry.lab:5000/library/busybox:1.37.0",
    }
    upstream = {
        c["image"]
        for d in docs_of(storage_types.DEMO, ctx)
        if d["kind"] == "Pod"
        for c in d["spec"]["containers"]
    }
    assert upstream == {"docker.io/rook/ceph:v1.20.6", "docker.io/library/busybox:1.37.0"}


def test_every_applied_file_exists_and_every_step_says_something(ctx):
    for demo in DEMOS:
        files = set(render_manifests(demo, ctx))
        for step in [*demo.steps(ctx), *(demo.cleanup(ctx) if demo.cleanup else [])]:
            assert step.say
            assert set(step.apply) <= files, (demo.name, step.apply)


def test_the_needs():
    assert storage_types.DEMO.needs == ("rbd",)
    assert pv_pvc.DEMO.needs == csi.DEMO.needs == access_modes.DEMO.needs == ()
    steps = access_modes.DEMO.steps(context("meetup-host"))
    first_rbd = next(i for i, s in enumerate(steps) if s.needs)
    assert steps[first_rbd].needs == ("rbd",)
    assert all("rwo" not in f for s in steps[:first_rbd] for f in s.apply)  # RWX part before
    assert steps[first_rbd].apply == ("rwo.yaml",)


# ---------------------------------------------------------------- access-modes placement


def test_access_modes_pins_two_workers_on_different_nodes(ctx):
    pods = {d["metadata"]["name"]: d for d in docs_of(access_modes.DEMO, ctx) if d["kind"] == "Pod"}
    a, b = access_modes.two_nodes(ctx)
    assert a != b
    assert {a, b} <= set(ctx.groups["kube_node"])
    assert pods["writer-a"]["spec"]["nodeName"] == pods["holder-a"]["spec"]["nodeName"] == a
    assert pods["writer-b"]["spec"]["nodeName"] == pods["holder-b"]["spec"]["nodeName"] == b


def test_access_modes_on_one_node_stops_cleanly_naming_it(ctx):
    one = Context(
        lab="one", vars=ctx.vars, hosts=["solo"], hostvars={}, groups={"kube_node": ["solo"]}
    )
    (step,) = access_modes.DEMO.steps(one)
    reason = step.stop(ok(""), one)
    assert "solo" in reason
    assert "two nodes" in reason
    assert access_modes.two_nodes(one) == ["solo", "solo"]  # the manifests still render


# ---------------------------------------------------------------- the checks
# Outputs shaped like kubectl's output for the command each step runs.

BLOCK_MOUNT = """\
Filesystem                Size      Used Available Use% Mounted on
/dev/rbd0               973.4M     24.0K    957.4M   0% /data
/dev/rbd0 /data ext4 rw,seclabel,relatime,stripe=16 0 0
"""
CEPHFS_MOUNT = """\
Filesystem                Size      Used Available Use% Mounted on
10.96.12.4:6789,10.96.80.2:6789:/volumes/csi/csi-vol-8f1c/5e2a
                          1.0G         0      1.0G   0% /data
10.96.12.4:6789,10.96.80.2:6789:/volumes/csi/csi-vol-8f1c/5e2a /data ceph rw,relatime,name=csi-cephfs-node,fs=myfs 0 0
"""
FUSE_MOUNT = "ceph-fuse /data fuse.ceph-fuse rw,nosuid,nodev,relatime,user_id=0,group_id=0 0 0\n"
LOCAL_MOUNT = "overlay /data overlay rw,relatime 0 0\n"


def test_storage_types_checks(ctx):
    assert storage_types.block_filesystem(ok(BLOCK_MOUNT), ctx) is None
    assert "not from a mapped RBD" in storage_types.block_filesystem(ok(CEPHFS_MOUNT), ctx)
    raw = "brw-rw----    1 root     disk      252,  16 Nov 26 07:40 /dev/xvda\n1073741824\n"
    assert storage_types.raw_device(ok(raw), ctx) is None
    notraw = "-rw-r--r--    1 root     root      0 Nov 26 07:40 /dev/xvda\n0\n"
    assert "not a block device" in storage_types.raw_device(ok(notraw), ctx)
    assert storage_types.shared_filesystem(ok(CEPHFS_MOUNT), ctx) is None
    assert storage_types.shared_filesystem(ok(FUSE_MOUNT), ctx) is None
    assert "not CephFS" in storage_types.shared_filesystem(ok(LOCAL_MOUNT), ctx)
    s3 = (
        "endpoint http://rook-ceph-rgw-my-store.rook-ceph.svc:80 bucket storage-types-1f2e\n"
        "cp /tmp/hello.txt s3://storage-types-1f2e/hello.txt\n"
        "2026/11/26 07:41:02                29  hello.txt\nhello from the s3-client pod\n"
    )
    assert storage_types.object_over_http(ok(s3), ctx) is None
    assert "s5cmd failed" in storage_types.object_over_http(
        Result(1, "", 'ERROR "cp /tmp/hello.txt": InvalidAccessKeyId'), ctx
    )
    kinds = """\
KIND                    NAME           CLASS              MODE         ACCESS          PHASE
PersistentVolumeClaim   fs-volume      rook-ceph-block    Filesystem   ReadWriteOnce   Bound
PersistentVolumeClaim   raw-device     rook-ceph-block    Block        ReadWriteOnce   Bound
PersistentVolumeClaim   shared-files   rook-cephfs        Filesystem   ReadWriteMany   Bound
ObjectBucketClaim       demo-bucket    rook-ceph-bucket   <none>       <none>          Bound
"""
    assert storage_types.three_kinds(ok(kinds), ctx) is None
    pending = kinds.replace("ReadWriteMany   Bound", "ReadWriteMany   Pending")
    assert "shared-files" in storage_types.three_kinds(ok(pending), ctx)


PVS_BOUND = """\
NAME                                       CLAIMNS       CLAIM     CLASS         RECLAIM   STATUS
pvc-0b6e4a52-7b9e-4f53-9a36-1f0d4c1e2a11   demo-pv-pvc   scratch   rook-cephfs   Delete    Bound
pvc-5d1c2f90-3a7e-4b1e-8c2d-7e6f5a4b3c22   demo-pv-pvc   keeper    rook-cephfs   Delete    Bound
pvc-9a8b7c6d-1e2f-4a3b-8c7d-6e5f4a3b2c33   demo-csi      follow    rook-cephfs   Delete    Bound
"""
PVS_RELEASED = """\
NAME                                       CLAIMNS       CLAIM     CLASS         RECLAIM   STATUS
pvc-5d1c2f90-3a7e-4b1e-8c2d-7e6f5a4b3c22   demo-pv-pvc   keeper    rook-cephfs   Retain    Released
"""


def test_pv_pvc_checks(ctx):
    assert pv_pvc.dynamic(ok(PVS_BOUND), ctx) is None
    assert "scratch" in pv_pvc.dynamic(ok(PVS_RELEASED), ctx)
    assert pv_pvc.keep_pv(ok(PVS_BOUND), ctx) == {"pv": "pvc-5d1c2f90-3a7e-4b1e-8c2d-7e6f5a4b3c22"}
    assert pv_pvc.retained(ok(PVS_RELEASED), ctx) is None
    assert "still there" in pv_pvc.retained(ok(PVS_BOUND), ctx)
    gone = PVS_RELEASED.splitlines()[0] + "\n"
    assert "not retained" in pv_pvc.retained(ok(gone), ctx)
    deleted_policy = PVS_RELEASED.replace("Retain ", "Delete ")
    assert "Released/Retain" in pv_pvc.retained(ok(deleted_policy), ctx)
    assert pv_pvc.read_back(ok("written by writer at Thu Nov 26 07:44:10 UTC 2026\n"), ctx) is None
    assert "not the same PV" in pv_pvc.read_back(ok(""), ctx)
    cluster = "componentstatuses\nnamespaces\nnodes\npersistentvolumes\ncsidrivers.storage.k8s.io\nstorageclasses.storage.k8s.io\nvolumeattachments.storage.k8s.io\n"
    namespaced = "configmaps\npersistentvolumeclaims\npods\ncsistoragecapacities.storage.k8s.io\n"
    assert pv_pvc.cluster_scoped(ok(cluster), ctx) is None
    assert "persistentvolumes" in pv_pvc.cluster_scoped(ok(namespaced), ctx)
    assert pv_pvc.namespaced(ok(namespaced), ctx) is None
    assert "persistentvolumeclaims" in pv_pvc.namespaced(ok(cluster), ctx)
    assert "csidrivers.storage.k8s.io" in pv_pvc.show_storage(ok(cluster))
    assert "nodes" not in pv_pvc.show_storage(ok(cluster)).split()


def test_pv_pvc_uses_the_kept_pv_name(ctx):
    kept = pv_pvc.keep_pv(ok(PVS_BOUND), ctx)
    used = [
        fill(s.kubectl, kept) for s in pv_pvc.DEMO.steps(ctx) if s.kubectl and "$pv" in s.kubectl
    ]
    assert len(used) == 4
    assert all(kept["pv"] in args for args in used)
    # shell variables inside kubectl exec stay for the pod's shell
    assert fill(["sh", "-c", "echo $BUCKET_HOST $pv"], kept) == [
        "sh",
        "-c",
        f"echo $BUCKET_HOST {kept['pv']}",
    ]


def test_access_modes_checks(ctx):
    a, b = access_modes.two_nodes(ctx)
    pods = f"""\
NAME       NODE      STATUS
writer-a   {a}   Running
writer-b   {b}   Running
"""
    assert access_modes.on_two_nodes(ok(pods), ctx) is None
    assert f"not {b}" in access_modes.on_two_nodes(
        ok(pods.replace(f"writer-b   {b}", f"writer-b   {a}")), ctx
    )
    log = f"writer-a on {a} 07:45:01\nwriter-b on {b} 07:45:02\nwriter-a on {a} 07:45:03\n"
    assert access_modes.both_writers(ok(log), ctx) is None
    only_a = f"writer-a on {a} 07:45:01\nwriter-a on {a} 07:45:03\n"
    assert f"writer-b on {b}" in access_modes.both_writers(ok(only_a), ctx)
    events = """\
REASON               OBJECT     MESSAGE
FailedAttachVolume   holder-b   Multi-Attach error for volume "pvc-1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d" Volume is already used by pod(s) holder-a
"""
    assert access_modes.multi_attach(ok(events), ctx) is None
    assert access_modes.multi_attach(
        ok("No resources found in demo-access-modes namespace.\n"), ctx
    )
    phases = f"NAME       NODE      PHASE\nholder-a   {a}   Running\nholder-b   {b}   Pending\n"
    assert access_modes.still_waiting(ok(phases), ctx) is None
    assert "not Pending" in access_modes.still_waiting(
        ok(phases.replace("Pending", "Running")), ctx
    )


def test_csi_anatomy_checks(ctx):
    drivers = """\
NAME                            ATTACHREQ   PODINFO   FSGROUP
rook-ceph.cephfs.csi.ceph.com   true        false     File
rook-ceph.rbd.csi.ceph.com      true        false     File
"""
    assert csi.csidrivers(ok(drivers), ctx) is None
    assert csi.RBD in csi.csidrivers(
        ok(drivers.splitlines()[0] + "\n" + drivers.splitlines()[1]), ctx
    )
    deploys = """\
NAME                                       CONTAINERS
rook-ceph-operator                         rook-ceph-operator
rook-ceph.cephfs.csi.ceph.com-ctrlplugin   csi-cephfsplugin,csi-provisioner,csi-resizer,csi-attacher,csi-snapshotter
rook-ceph.rbd.csi.ceph.com-ctrlplugin      csi-rbdplugin,csi-provisioner,csi-resizer,csi-attacher,csi-snapshotter
"""
    assert csi.controller_plugins(ok(deploys), ctx) is None
    assert "csi-snapshotter" in csi.controller_plugins(
        ok(deploys.replace(",csi-snapshotter", "")), ctx
    )
    assert "-ctrlplugin" in csi.show_rows("-ctrlplugin")(ok(deploys))
    assert "rook-ceph-operator" not in csi.show_rows("-ctrlplugin")(ok(deploys))
    n = len(ctx.hosts)
    ds = f"""\
NAME                                       READY   CONTAINERS
rook-ceph.cephfs.csi.ceph.com-nodeplugin   {n}       csi-cephfsplugin,driver-registrar
rook-ceph.rbd.csi.ceph.com-nodeplugin      {n}       csi-rbdplugin,driver-registrar
"""
    assert csi.node_plugins(ok(ds), ctx) is None
    assert f"not {n}" in csi.node_plugins(ok(ds.replace(f"   {n}  ", f"   {n - 1}  ", 1)), ctx)
    assert "registrar" in csi.node_plugins(ok(ds.replace(",driver-registrar", "")), ctx)
    nodes = "NODE   DRIVERS\n" + "".join(f"{h}   {csi.CEPHFS},{csi.RBD}\n" for h in ctx.hosts)
    assert csi.registered(ok(nodes), ctx) is None
    last = ctx.hosts[-1]
    assert last in csi.registered(ok(nodes.replace(f"{last}   {csi.CEPHFS},", f"{last}   ")), ctx)


PV_FOLLOW = """\
NAME                                       CLAIMNS    CLAIM    DRIVER                          HANDLE
pvc-9a8b7c6d-1e2f-4a3b-8c7d-6e5f4a3b2c33   demo-csi   follow   rook-ceph.cephfs.csi.ceph.com   0001-0009-rook-ceph-0000000000000001-6b1c0f7e-2d3a-4e5f-8a9b-0c1d2e3f4a5b
"""
ATTACH = """\
KIND                    NAMESPACE   NAME                                                                   VOLUME                                     ATTACHREQ   PV                                         NODE   ATTACHED
PersistentVolumeClaim   demo-csi    follow                                                                 pvc-9a8b7c6d-1e2f-4a3b-8c7d-6e5f4a3b2c33   <none>      <none>                                     <none>   <none>
VolumeAttachment        <none>      csi-3f2e1d0c9b8a7f6e5d4c3b2a1f0e9d8c7b6a5f4e3d2c1b0a9f8e7d6c5b4a3f2e   <none>                                     <none>      pvc-9a8b7c6d-1e2f-4a3b-8c7d-6e5f4a3b2c33   node2   true
CSIDriver               <none>      rook-ceph.cephfs.csi.ceph.com                                          <none>                                     true        <none>                                     <none>   <none>
"""


def test_csi_follow_checks(ctx):
    assert (
        csi.provisioned(
            ok(
                "REASON                  FROM                                                 MESSAGE\n"
                "ExternalProvisioning    persistentvolume-controller                          Waiting for a volume to be created either by the external provisioner 'rook-ceph.cephfs.csi.ceph.com' or manually by the system administrator\n"
                'Provisioning            rook-ceph.cephfs.csi.ceph.com_ctrlplugin-7d9f_1a2b   External provisioner is provisioning volume for claim "demo-csi/follow"\n'
                "ProvisioningSucceeded   rook-ceph.cephfs.csi.ceph.com_ctrlplugin-7d9f_1a2b   Successfully provisioned volume pvc-9a8b7c6d-1e2f-4a3b-8c7d-6e5f4a3b2c33\n"
            ),
            ctx,
        )
        is None
    )
    assert csi.provisioned(ok("No resources found in demo-csi namespace.\n"), ctx)
    assert csi.followed_pv(ok(PV_FOLLOW), ctx) is None
    assert "no PV" in csi.followed_pv(ok(PVS_BOUND.replace("follow", "other")), ctx)
    assert csi.attached(ok(ATTACH), ctx) is None
    assert "not attached" in csi.attached(ok(ATTACH.replace("node2   true", "node2   false")), ctx)
    no_va = "\n".join(ln for ln in ATTACH.splitlines() if not ln.startswith("VolumeAttachment"))
    assert "no VolumeAttachment" in csi.attached(ok(no_va), ctx)
    assert csi.attached(ok(no_va.replace("  true  ", "  false ")), ctx) is None  # no attach phase
    assert "VolumeAttachment" in csi.show_attach(ok(ATTACH))
    assert csi.mounted(ok(CEPHFS_MOUNT), ctx) is None
    assert "not CephFS" in csi.mounted(ok(LOCAL_MOUNT), ctx)
    assert csi.expanded(ok("REQUEST   CAPACITY\n2Gi       2Gi\n"), ctx) is None
    assert "not 2Gi" in csi.expanded(ok("REQUEST   CAPACITY\n2Gi       1Gi\n"), ctx)


def test_csi_snapshot_checks(ctx):
    all_crds = "".join(
        f"customresourcedefinition.apiextensions.k8s.io/{c}\n" for c in csi.SNAPSHOT_CRDS
    )
    assert csi.missing_crds(ok(all_crds), ctx) is None
    reason = csi.missing_crds(ok(""), ctx)
    assert all(c in reason for c in csi.SNAPSHOT_CRDS)
    assert "snapshot-controller" in reason
    step = next(s for s in csi.DEMO.steps(ctx) if s.stop)
    assert step.stop is csi.missing_crds
    assert not step.apply  # it stops before the snapshot manifests are applied
    ready = (
        "READY   SIZE   CONTENT\ntrue    2Gi    snapcontent-4e5f6a7b-8c9d-4e0f-a1b2-c3d4e5f6a7b8\n"
    )
    assert csi.snapshot_ready(ok(ready), ctx) is None
    assert "snapshot-controller" in csi.snapshot_ready(ok(ready.replace("true ", "false")), ctx)
    assert csi.restored(ok("before the snapshot\n"), ctx) is None
    assert "after the snapshot" in csi.restored(ok("after the snapshot\n"), ctx)
