"""Verify, ceph layer: what the Rook stage promises.

Cluster-wide, with kubectl on the controller (the lab's kubeconfig and cached kubectl from
the inventory): the CephCluster is Ready; `ceph status -f json` in the toolbox, read by
clusterlab.cephstatus, is HEALTH_OK (a tolerated warning only where named below, with its
reason), has rook_mon_count mons in quorum, an active mgr, and as many OSDs up and in as the
inventory has Ceph disks; each StorageClass exists; a PVC of the block class and one of the
file class bind and carry data from one pod to another; an ObjectBucketClaim gets its
ConfigMap and Secret and an object goes in and comes back out.

Pods run the image of the lab's Rook operator (rook/ceph, already on the nodes, mirror
settings included): it has a shell and s5cmd (Rook's docs: the ceph/ceph toolbox image does
not). Everything made here lives in namespace clusterlab-verify-ceph, deleted at the end
also on failure (its PVCs and bucket go with it: the classes' reclaimPolicy is Delete).

The block round trip needs a node whose kernel can map RBD images with the block class's
mounter (rbd, or nbd for rbd-nbd): each node is probed with clusterlab.cephclient's probe,
the one the stage uses; with no such node the test is skipped, naming the nodes.
"""

from __future__ import annotations

import json
import time
import uuid

import labkube
import pytest
import testinfra
import yaml
from labkube import read_inventory

from clusterlab import cephclient, cephstatus, rook

NAMESPACE = "rook-ceph"
BLOCK_CLASS = "rook-ceph-block"
FILE_CLASS = "rook-cephfs"
BUCKET_CLASS = "rook-ceph-bucket"
STORAGE_CLASSES = {BLOCK_CLASS, FILE_CLASS, BUCKET_CLASS}
LOCAL_CLASS = "local-storage"  # pvc mode without rook.storage_class
TEST_NS = "clusterlab-verify-ceph"
WAIT = 300  # seconds for a claim to bind, a pod to finish, a bucket to be provisioned


@pytest.fixture(scope="module")
def lab(request) -> dict:
    """The inventory the suite runs against, and whether nodes are reached with sudo."""
    out = read_inventory(request.config.option.ansible_inventory)
    out["sudo"] = bool(getattr(request.config.option, "sudo", False))
    return out


def kubectl(lab: dict, *args: str, check: bool = True, stdin: str | None = None) -> str:
    return labkube.kubectl(lab, *args, check=check, stdin=stdin, timeout=WAIT + 60)


def expected_osds(lab: dict) -> int:
    """The inventory's Ceph disks (rook.device_filter narrows, as in the stage)."""
    host_disks = {h: lab["hostvars"][h].get("lab_disks") or [] for h in lab["groups"]["ceph_osd"]}
    return len(rook.ceph_disks(host_disks, lab["vars"].get("rook_device_filter") or ""))


def tolerated(lab: dict) -> dict[str, str]:
    """Health checks accepted for this lab, each with the reason."""
    out = {}
    if int(lab["vars"]["rook_replica_size"]) == 1:
        out["POOL_NO_REDUNDANCY"] = (
            "rook.replica_size is 1: pools without replicas are all a lab with one OSD host "
            "can hold (the stage also sets mon_warn_on_pool_no_redundancy false)"
        )
    if expected_osds(lab) < 3:
        out["TOO_FEW_OSDS"] = (
            f"the lab has {expected_osds(lab)} Ceph disk(s): Ceph compares that with its "
            "default pool size 3, while every pool the stage makes is sized for the lab"
        )
    return out


@pytest.fixture(scope="module")
def status(lab) -> cephstatus.Summary:
    out = kubectl(
        lab, "-n", NAMESPACE, "exec", "deploy/rook-ceph-tools", "--", "ceph", "status", "-f", "json"
    )
    return cephstatus.summarize(json.loads(out))


def test_cephcluster_ready(lab):
    items = json.loads(kubectl(lab, "-n", NAMESPACE, "get", "cephclusters", "-o", "json"))["items"]
    assert len(items) == 1, f"{len(items)} CephClusters in {NAMESPACE}"
    st = items[0].get("status") or {}
    assert st.get("phase") == "Ready", f"phase {st.get('phase')}: {st.get('message')}"


def test_health_ok(lab, status):
    allowed = tolerated(lab)
    if status.health == "HEALTH_OK":
        return
    assert status.health == "HEALTH_WARN", f"{status.health}: {status.checks}"
    unexpected = {k: v for k, v in status.checks.items() if k not in allowed}
    assert not unexpected, f"HEALTH_WARN: {unexpected} (tolerated here: {allowed})"


def test_mons_in_quorum(lab, status):
    assert len(status.quorum) == int(lab["vars"]["rook_mon_count"]), (
        f"quorum {status.quorum}, rook.mon_count {lab['vars']['rook_mon_count']}"
    )


def test_a_mgr_is_active(status):
    assert status.mgr_active is True


def test_osds_up_and_in_are_the_inventory_ceph_disks(lab, status):
    want = expected_osds(lab)
    assert (status.osds, status.osds_up, status.osds_in) == (want, want, want), (
        "; ".join(cephstatus.missing(status, mons=0, osds=want)) or f"{status.osds} OSDs exist"
    )


def test_storage_classes_present(lab):
    items = json.loads(kubectl(lab, "get", "storageclass", "-o", "json"))["items"]
    names = {sc["metadata"]["name"] for sc in items}
    want = set(STORAGE_CLASSES)
    if lab["vars"].get("rook_mode") == "pvc":
        want.add(lab["vars"].get("rook_storage_class") or LOCAL_CLASS)
    assert want <= names, f"missing: {sorted(want - names)}"


# ---------------------------------------------------------------- round trips


@pytest.fixture(scope="module")
def workspace(lab):
    """The test namespace and the image its pods run; deleted at the end, also on failure."""
    image = kubectl(
        lab,
        "-n",
        NAMESPACE,
        "get",
        "deploy/rook-ceph-operator",
        "-o",
        "jsonpath={.spec.template.spec.containers[0].image}",
    ).strip()
    assert image, "the Rook operator deployment names no image"
    kubectl(
        lab,
        "apply",
        "-f",
        "-",
        stdin=yaml.safe_dump(
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": TEST_NS}}
        ),
    )
    try:
        yield {"image": image}
    finally:
        kubectl(lab, "delete", "namespace", TEST_NS, "--wait=true", "--timeout=300s", check=False)


def apply(lab: dict, *docs: dict) -> None:
    kubectl(lab, "-n", TEST_NS, "apply", "-f", "-", stdin=yaml.safe_dump_all(list(docs)))


def claim(name: str, cls: str, mode: str) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": name},
        "spec": {
            "storageClassName": cls,
            "accessModes": [mode],
            "resources": {"requests": {"storage": "1Gi"}},
        },
    }


def events(lab: dict, name: str) -> str:
    out = kubectl(
        lab,
        "-n",
        TEST_NS,
        "get",
        "events",
        "--field-selector",
        f"involvedObject.name={name}",
        "-o",
        "jsonpath={range .items[*]}{.reason}: {.message}{'\\n'}{end}",
        check=False,
    )
    return "; ".join(out.split("\n")[-5:]).strip("; ") or "no events"


def run_pod(lab: dict, ws: dict, name: str, script: str, **spec) -> str:
    """Run `sh -c script` to completion in a pod; return its log or fail with why."""
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "restartPolicy": "Never",
            "tolerations": [{"operator": "Exists"}],
            "containers": [
                {
                    "name": "probe",
                    "image": ws["image"],
                    "command": ["sh", "-c", script],
                    **spec.pop("container", {}),
                }
            ],
            **spec,
        },
    }
    apply(lab, pod)
    deadline = time.monotonic() + WAIT
    phase = ""
    while time.monotonic() < deadline:
        phase = kubectl(lab, "-n", TEST_NS, "get", "pod", name, "-o", "jsonpath={.status.phase}")
        if phase in ("Succeeded", "Failed"):
            break
        time.sleep(3)
    log = kubectl(lab, "-n", TEST_NS, "logs", name, check=False)
    if phase != "Succeeded":
        pytest.fail(
            f"pod {name}: {phase or 'no phase'} after {WAIT}s; log: {log.strip()!r}; {events(lab, name)}"
        )
    return log


def mount(pvc: str) -> dict:
    return {
        "container": {"volumeMounts": [{"name": "data", "mountPath": "/data"}]},
        "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": pvc}}],
    }


def round_trip(lab: dict, ws: dict, pvc: str, writer_node: str, reader_node: str) -> None:
    token = uuid.uuid4().hex
    run_pod(
        lab,
        ws,
        f"{pvc}-writer",
        f"echo {token} > /data/probe && sync",
        nodeSelector={"kubernetes.io/hostname": writer_node},
        **mount(pvc),
    )
    phase = kubectl(lab, "-n", TEST_NS, "get", "pvc", pvc, "-o", "jsonpath={.status.phase}")
    assert phase == "Bound", f"PVC {pvc}: {phase}; {events(lab, pvc)}"
    log = run_pod(
        lab,
        ws,
        f"{pvc}-reader",
        "cat /data/probe",
        nodeSelector={"kubernetes.io/hostname": reader_node},
        **mount(pvc),
    )
    assert log.strip() == token, f"read {log.strip()!r} from {pvc}, wrote {token!r}"


def node_features(lab: dict) -> dict[str, dict[str, bool]]:
    """Each node's Ceph kernel clients, probed on the node as the stage does."""
    shared = bool(lab["vars"].get("clusterlab_shared_kernel"))
    out = {}
    for name in lab["groups"]["k8s_cluster"]:
        host = testinfra.get_host(
            f"ansible://{name}", ansible_inventory=str(lab["path"]), sudo=lab["sudo"]
        )
        res = host.run(cephclient.probe_script(shared))
        assert res.rc == 0, f"{name}: kernel probe failed: {res.stderr}"
        out[name] = cephclient.parse_probe(res.stdout)
    return out


def test_block_claim_binds_and_round_trips(lab, workspace):
    sc = json.loads(kubectl(lab, "get", "storageclass", BLOCK_CLASS, "-o", "json"))
    mounter = (sc.get("parameters") or {}).get("mounter", "rbd")
    module = "nbd" if mounter == "rbd-nbd" else "rbd"
    features = node_features(lab)
    able = [n for n, f in sorted(features.items()) if f[module]]
    if not able:
        pytest.skip(
            f"no node can map RBD volumes with mounter {mounter}: "
            f"{', '.join(sorted(features))} lack the {module} kernel module"
            + (
                " (they share this host's kernel)"
                if lab["vars"].get("clusterlab_shared_kernel")
                else ""
            )
        )
    apply(lab, claim("block", BLOCK_CLASS, "ReadWriteOnce"))
    round_trip(lab, workspace, "block", able[0], able[-1])


def test_file_claim_binds_and_round_trips_between_nodes(lab, workspace):
    nodes = lab["groups"]["k8s_cluster"]
    apply(lab, claim("file", FILE_CLASS, "ReadWriteMany"))
    round_trip(lab, workspace, "file", nodes[0], nodes[-1])


def test_bucket_claim_gets_configmap_secret_and_an_object_round_trips(lab, workspace):
    apply(
        lab,
        {
            "apiVersion": "objectbucket.io/v1alpha1",
            "kind": "ObjectBucketClaim",
            "metadata": {"name": "bucket"},
            "spec": {"generateBucketName": "clusterlab-verify", "storageClassName": BUCKET_CLASS},
        },
    )
    deadline = time.monotonic() + WAIT
    phase = ""
    while time.monotonic() < deadline:
        phase = kubectl(
            lab, "-n", TEST_NS, "get", "obc", "bucket", "-o", "jsonpath={.status.phase}"
        )
        if phase == "Bound":
            break
        time.sleep(3)
    assert phase == "Bound", (
        f"ObjectBucketClaim bucket: {phase or 'no phase'}; {events(lab, 'bucket')}"
    )
    cm = json.loads(kubectl(lab, "-n", TEST_NS, "get", "configmap", "bucket", "-o", "json"))
    assert {"BUCKET_HOST", "BUCKET_PORT", "BUCKET_NAME"} <= set(cm.get("data") or {})
    assert cm["data"]["BUCKET_NAME"].startswith("clusterlab-verify")
    secret = json.loads(kubectl(lab, "-n", TEST_NS, "get", "secret", "bucket", "-o", "json"))
    assert {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} <= set(secret.get("data") or {})
    token = uuid.uuid4().hex
    s5 = 's5cmd --endpoint-url "http://${BUCKET_HOST}:${BUCKET_PORT}"'
    log = run_pod(
        lab,
        workspace,
        "bucket-client",
        f'export AWS_REGION="${{BUCKET_REGION:-us-east-1}}"; echo {token} > /tmp/probe && '
        f'{s5} cp /tmp/probe "s3://${{BUCKET_NAME}}/probe" >/dev/null && '
        f'{s5} cat "s3://${{BUCKET_NAME}}/probe"',
        container={
            "envFrom": [{"configMapRef": {"name": "bucket"}}, {"secretRef": {"name": "bucket"}}]
        },
    )
    assert log.strip() == token, f"read {log.strip()!r} from the bucket, wrote {token!r}"
