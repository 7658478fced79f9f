"""The ceph_storage role's manifests for every example lab (host and pvc mode) and a one-node
lab: strict against the pinned Rook CRD schemas, core objects against Kubernetes'
schema at the lab's minor, and the facts the stage promises (replica sizes, mounters from
the nodes' kernel, the default class, MDS standby).

Rendered by `clusterlab manifests` (the rook/ play of playbooks/manifests.yml, which includes
the role's render.yml) with the lab's planned inventory and an empty state root, so a lab
that is up does not change the result; the role's files are checked here, the rest of rook/
by the ceph_cluster tests. Given kernel probes go through tests/fixtures/render-ceph-storage.yml,
the same include with extra vars.
"""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path

import pytest
import rookschema
import yaml
from localplay import run_playbook
from test_cni import validate_all

from clusterlab import cephclient, hostkernel, manifests, paths
from clusterlab.spec import normalize

FIXTURE = paths.ROOT / "tests" / "fixtures" / "render-ceph-storage.yml"
ROLE = paths.ROOT / "roles" / "rook" / "ceph_storage"
RESET_ROLE = paths.ROOT / "roles" / "reset" / "rook_cleanup"
EXAMPLES = sorted(p.parent.name for p in paths.INVENTORIES.glob("*/lab.yml"))
VARIANTS = {
    # one local node: size 1, one mon, no MDS standby
    "one-node": {
        "name": "one-node",
        "provider": "local",
        "nodes": {"count": 1, "control_plane": 1, "disks": [{"size": "10G"}]},
    },
}
LABS = EXAMPLES + list(VARIANTS)
POOL_KINDS = ("CephBlockPool", "CephFilesystem", "CephObjectStore")
FILES = yaml.safe_load((ROLE / "vars" / "main.yml").read_text())["ceph_storage_files"]


def lab_spec(lab: str) -> dict:
    if lab in VARIANTS:
        return normalize(VARIANTS[lab])
    return normalize(yaml.safe_load(paths.lab_spec_file(lab).read_text()))


def read_files(folder: Path, names: list[str] | None = None) -> dict:
    return {
        f.name: {
            "text": f.read_text(),
            "docs": [d for d in yaml.safe_load_all(f.read_text()) if d],
        }
        for f in sorted(folder.iterdir())
        if names is None or f.name in names
    }


def render(spec: dict, work: Path) -> dict:
    """`clusterlab manifests` (its rook/ play); {file name: {text, docs}} of this role's files."""
    out = work / "out"
    manifests.render(spec, out, tags=["rook"])
    files = read_files(out / "rook", FILES)
    assert sorted(files) == sorted(FILES)
    return files


def render_fixture(spec: dict, work: Path, extra: dict) -> dict:
    """The role's render.yml alone (tests/fixtures/render-ceph-storage.yml), with extra vars."""
    inv = work / "hosts.yml"
    inv.write_text(yaml.safe_dump(manifests.lab_inventory(spec), sort_keys=False))
    out = work / "out"
    res = run_playbook(
        FIXTURE,
        inv,
        {
            "out_dir": str(out),
            "ansible_connection": "local",
            "ansible_python_interpreter": sys.executable,
            **extra,
        },
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    return read_files(out / "rook")


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """lab -> (spec, {file: {text, docs}}); one ansible-playbook run per lab."""
    cache: dict = {}

    def get(lab: str):
        if lab not in cache:
            work = tmp_path_factory.mktemp(lab)
            with pytest.MonkeyPatch.context() as mp:
                mp.setenv("CLUSTERLAB_STATE", str(work / "state"))
                spec = lab_spec(lab)
                cache[lab] = (spec, render(spec, work))
            assert not (work / "state").exists(), "rendering created a state dir"
        return cache[lab]

    return get


def docs_of(files: dict) -> list[dict]:
    return [d for f in files.values() for d in f["docs"]]


def find(docs: list[dict], kind: str, name: str) -> dict:
    (doc,) = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    return doc


def osd_hosts(spec: dict) -> int:
    hosts = [n for n in spec["nodes"] if any(d["ceph"] for d in n["disks"])]
    return len(hosts) if hosts or not spec["rook"]["storage_class"] else len(spec["nodes"])


def pools(doc: dict) -> list[dict]:
    spec = doc["spec"]
    if doc["kind"] == "CephBlockPool":
        return [spec]
    if doc["kind"] == "CephFilesystem":
        return [spec["metadataPool"], *spec["dataPools"]]
    return [spec["metadataPool"], spec["dataPool"]]


# ---------------------------------------------------------------- schemas


@pytest.mark.parametrize("lab", LABS)
def test_custom_objects_pass_the_rook_crd_schemas_strictly(rendered, lab):
    _, files = rendered(lab)
    custom = [d for d in docs_of(files) if d["apiVersion"].startswith("ceph.rook.io/")]
    assert {d["kind"] for d in custom} == set(POOL_KINDS)
    for doc in custom:
        assert rookschema.problems(doc) == [], f"{doc['kind']}/{doc['metadata']['name']}"


@pytest.mark.parametrize("lab", LABS)
def test_core_objects_pass_kubernetes_schema_at_the_lab_minor(rendered, lab):
    spec, files = rendered(lab)
    core = [d for d in docs_of(files) if not d["apiVersion"].startswith("ceph.rook.io/")]
    assert {d["kind"] for d in core} == {"StorageClass"}
    validate_all(core, spec["kubernetes"]["version"])


@pytest.mark.parametrize(
    ("where", "change"),
    [
        ("unknown key", lambda d: d["spec"]["replicated"].update(sizee=3)),
        ("misplaced key", lambda d: d["spec"].update(size=3)),
        ("wrong type", lambda d: d["spec"]["replicated"].update(size="3")),
        ("unknown metadata", lambda d: d["metadata"].update(labelz={})),
    ],
)
def test_the_schema_check_refuses_what_a_cluster_would_prune_or_reject(rendered, where, change):
    _, files = rendered("default")
    pool = json.loads(json.dumps(find(docs_of(files), "CephBlockPool", "replicapool")))
    change(pool)
    assert rookschema.problems(pool), where


# ---------------------------------------------------------------- field facts


@pytest.mark.parametrize("lab", LABS)
def test_every_pool_has_the_spec_replica_size_within_the_osd_hosts(rendered, lab):
    spec, files = rendered(lab)
    size = spec["rook"]["replica_size"]
    assert 1 <= size <= osd_hosts(spec)
    docs = docs_of(files)
    for doc in [d for d in docs if d["kind"] in POOL_KINDS]:
        for pool in pools(doc):
            assert pool["failureDomain"] == "host"
            assert pool["replicated"]["size"] == size, doc["metadata"]["name"]
            # Rook refuses a single replica unless told it is not safe; never said otherwise
            assert ("requireSafeReplicaSize" in pool["replicated"]) == (size == 1)
            if size == 1:
                assert pool["replicated"]["requireSafeReplicaSize"] is False
    mgr = [d for d in docs if d["kind"] == "CephBlockPool" and d["spec"].get("name") == ".mgr"]
    assert len(mgr) == (1 if size < 3 else 0)


def test_a_one_node_lab_gets_single_replicas_and_no_mds_standby(rendered):
    spec, files = rendered("one-node")
    assert spec["rook"]["replica_size"] == 1
    fs = find(docs_of(files), "CephFilesystem", "myfs")
    assert fs["spec"]["metadataServer"] == {"activeCount": 1, "activeStandby": False}


@pytest.mark.parametrize("lab", LABS)
def test_mds_standby_replay_where_there_are_two_nodes_or_more(rendered, lab):
    spec, files = rendered(lab)
    mds = find(docs_of(files), "CephFilesystem", "myfs")["spec"]["metadataServer"]
    assert mds["activeCount"] == 1
    assert mds["activeStandby"] is (len(spec["nodes"]) >= 2)
    assert ("placement" in mds) is mds["activeStandby"]


@pytest.mark.parametrize("lab", LABS)
def test_storage_classes_and_their_ceph_objects(rendered, lab):
    _, files = rendered(lab)
    docs = docs_of(files)
    classes = {d["metadata"]["name"]: d for d in docs if d["kind"] == "StorageClass"}
    assert set(classes) == {"rook-ceph-block", "rook-cephfs", "rook-ceph-bucket"}
    default = "storageclass.kubernetes.io/is-default-class"
    assert [n for n, d in classes.items() if d["metadata"].get("annotations", {}).get(default)] == [
        "rook-ceph-block"
    ]
    assert classes["rook-ceph-block"]["metadata"]["annotations"][default] == "true"

    block = classes["rook-ceph-block"]
    assert block["provisioner"] == "rook-ceph.rbd.csi.ceph.com"
    assert (block["reclaimPolicy"], block["allowVolumeExpansion"]) == ("Delete", True)
    p = block["parameters"]
    assert p["clusterID"] == "rook-ceph"
    assert p["pool"] == find(docs, "CephBlockPool", "replicapool")["metadata"]["name"]
    assert (p["imageFormat"], p["imageFeatures"]) == ("2", "layering")
    assert p["csi.storage.k8s.io/fstype"] == "ext4"
    assert p["csi.storage.k8s.io/provisioner-secret-name"] == "rook-csi-rbd-provisioner"
    assert p["csi.storage.k8s.io/node-stage-secret-name"] == "rook-csi-rbd-node"
    assert all(v == "rook-ceph" for k, v in p.items() if k.endswith("-secret-namespace"))

    fs = find(docs, "CephFilesystem", "myfs")
    file = classes["rook-cephfs"]
    assert file["provisioner"] == "rook-ceph.cephfs.csi.ceph.com"
    q = file["parameters"]
    assert q["fsName"] == fs["metadata"]["name"]
    # Rook names a named data pool <filesystem>-<pool name> (preservePoolNames unset)
    assert "preservePoolNames" not in fs["spec"]
    assert q["pool"] == f"myfs-{fs['spec']['dataPools'][0]['name']}" == "myfs-replicated"
    assert q["csi.storage.k8s.io/provisioner-secret-name"] == "rook-csi-cephfs-provisioner"
    assert q["csi.storage.k8s.io/node-stage-secret-name"] == "rook-csi-cephfs-node"

    store = find(docs, "CephObjectStore", "my-store")
    assert store["spec"]["gateway"] == {"port": 80, "instances": 1}
    bucket = classes["rook-ceph-bucket"]
    assert bucket["provisioner"] == "rook-ceph.ceph.rook.io/bucket"
    assert bucket["parameters"] == {
        "objectStoreName": "my-store",
        "objectStoreNamespace": "rook-ceph",
    }
    for doc in docs:
        assert doc["metadata"]["labels"] == {"app.kubernetes.io/managed-by": "clusterlab"}


def expected_mounters(spec: dict) -> dict:
    if spec["provider"] == "local":
        features = hostkernel.ceph_client_features()
    else:
        features = cephclient.OWN_KERNEL_ASSUMED
    return cephclient.choose({n["name"]: features for n in spec["nodes"]})


@pytest.mark.parametrize("lab", LABS)
def test_mounters_follow_the_kernel_the_nodes_have(rendered, lab):
    """Local labs: this host's kernel (here no ceph module: fuse); own kernels: rbd and ceph."""
    spec, files = rendered(lab)
    want = expected_mounters(spec)
    docs = docs_of(files)
    file = find(docs, "StorageClass", "rook-cephfs")["parameters"]
    block = find(docs, "StorageClass", "rook-ceph-block")["parameters"]
    assert file.get("mounter", "kernel") == want["cephfs_mounter"]
    assert block.get("mounter", "rbd") == want["rbd_mounter"]
    unusable = "RBD volumes cannot be mapped on: "
    if want["rbd_unusable"]:
        assert (
            f"{unusable}{', '.join(want['rbd_unusable'])} " in files["storage-block.yaml"]["text"]
        )
    else:
        assert unusable not in files["storage-block.yaml"]["text"]
    if spec["provider"] != "local":
        assert "mounter" not in file
        assert "mounter" not in block


def test_this_machine_without_the_ceph_module_gets_fuse_on_local_labs(rendered):
    if hostkernel.ceph_client_features()["ceph"]:
        pytest.skip("this host's kernel has the ceph module")
    _, files = rendered("default")
    assert find(docs_of(files), "StorageClass", "rook-cephfs")["parameters"]["mounter"] == "fuse"


def test_probed_features_choose_the_mounters(tmp_path):
    """What the stage's probe sets (here given as extra vars) decides, node by node."""
    spec = lab_spec("default")
    features = {
        "node1": {"rbd": False, "nbd": True, "ceph": True},
        "node2": {"rbd": False, "nbd": True, "ceph": False},
        "node3": {"rbd": True, "nbd": False, "ceph": True},
    }
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CLUSTERLAB_STATE", str(tmp_path / "state"))
        files = render_fixture(spec, tmp_path, {"ceph_storage_kernel_features": features})
    docs = docs_of(files)
    assert find(docs, "StorageClass", "rook-ceph-block")["parameters"]["mounter"] == "rbd-nbd"
    assert find(docs, "StorageClass", "rook-cephfs")["parameters"]["mounter"] == "fuse"
    assert "cannot be mapped on: node3 " in files["storage-block.yaml"]["text"]
    assert "no ceph kernel module on node2." in files["storage-filesystem.yaml"]["text"]


# ---------------------------------------------------------------- the verify layer, reset


def load_infra(name: str, monkeypatch):
    """A verify suite's module (its helpers import from tests/infra, as under `inv verify`)."""
    infra = paths.ROOT / "tests" / "infra"
    monkeypatch.syspath_prepend(str(infra))
    spec = importlib.util.spec_from_file_location(f"infra_{name}", infra / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_verify_layer_checks_the_names_the_role_renders(rendered, monkeypatch):
    names = yaml.safe_load((ROLE / "vars" / "main.yml").read_text())
    infra = load_infra("test_ceph", monkeypatch)
    _, files = rendered("default")
    docs = docs_of(files)
    assert {
        d["metadata"]["name"] for d in docs if d["kind"] == "StorageClass"
    } == infra.STORAGE_CLASSES
    assert names["ceph_storage_block_class"] == infra.BLOCK_CLASS
    assert names["ceph_storage_file_class"] == infra.FILE_CLASS
    assert names["ceph_storage_bucket_class"] == infra.BUCKET_CLASS
    assert names["ceph_storage_namespace"] == infra.NAMESPACE


def crd_plurals() -> dict[str, str]:
    """kind -> plural.group, from the pinned CRDs."""
    return dict(rookschema.pinned()["kinds"])


@pytest.fixture(scope="module")
def cleanup_defaults() -> dict:
    return yaml.safe_load((RESET_ROLE / "defaults" / "main.yml").read_text())


def whole_rook_folder(spec: dict, work: Path) -> list[dict]:
    """Every document of the lab's rook/ from `clusterlab manifests` (all the stage's roles)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CLUSTERLAB_STATE", str(work / "state"))
        manifests.render(spec, work / "out", tags=["rook"])
    return [
        d
        for f in sorted((work / "out" / "rook").glob("*.yaml"))
        for d in yaml.safe_load_all(f.read_text())
        if d
    ]


@pytest.mark.parametrize("lab", EXAMPLES)
def test_reset_removes_what_the_stage_renders(tmp_path, lab, cleanup_defaults):
    """Every object of the lab's whole rook/ (the stage's roles together) is one reset
    deletes: its Ceph kinds, its StorageClasses (by provisioner or label), its PVs (by label)."""
    spec = lab_spec(lab)
    docs = whole_rook_folder(spec, tmp_path)
    plural = crd_plurals()
    ceph = {plural[d["kind"]] for d in docs if d["apiVersion"].startswith("ceph.rook.io/")}
    assert ceph == {*cleanup_defaults["rook_cleanup_ceph_kinds"], "cephclusters.ceph.rook.io"}
    regex = re.compile(cleanup_defaults["rook_cleanup_provisioner_regex"])
    key, value = cleanup_defaults["rook_cleanup_label"].split("=")
    for sc in [d for d in docs if d["kind"] == "StorageClass"]:
        labels = sc["metadata"].get("labels") or {}
        assert regex.match(sc["provisioner"]) or labels.get(key) == value, sc["metadata"]["name"]
    for pv in [d for d in docs if d["kind"] == "PersistentVolume"]:
        assert cleanup_defaults["rook_cleanup_pv_label"] in pv["metadata"].get("labels", {})
    assert ("PersistentVolume" in {d["kind"] for d in docs}) == (spec["rook"]["mode"] == "pvc")
    # what the verify layer and the demos create: bucket claims go first
    assert cleanup_defaults["rook_cleanup_claim_kinds"] == [plural["ObjectBucketClaim"]]


def test_reset_keeps_a_storage_class_the_user_named(tmp_path, cleanup_defaults):
    """pvc mode with rook.storage_class: the user's class is not made here, so it carries no
    label of ours, and its provisioner is not Rook's: reset leaves it."""
    spec = normalize(
        {
            "name": "own-class",
            "provider": "vagrant",
            "os": "rocky9",
            "nodes": {"count": 3, "control_plane": 1},
            "rook": {"mode": "pvc", "storage_class": "san-block"},
        }
    )
    docs = whole_rook_folder(spec, tmp_path)
    classes = {d["metadata"]["name"] for d in docs if d["kind"] == "StorageClass"}
    assert classes == {"rook-ceph-block", "rook-cephfs", "rook-ceph-bucket"}
    assert not [d for d in docs if d["kind"] == "PersistentVolume"]


def test_the_stage_probe_reads_each_node_kernel_and_names_what_it_lacks(tmp_path):
    """probe.yml for real, on nodes that are this machine (ansible_connection local): the
    features it finds are this kernel's, the mounters follow, and the warnings file names
    the nodes exactly when RBD cannot be mapped."""
    nodes = ["node1", "node2"]
    state = tmp_path / "state"
    inv = tmp_path / "hosts.yml"
    inv.write_text(
        yaml.safe_dump(
            {
                "all": {
                    "vars": {
                        "ansible_connection": "local",
                        "ansible_python_interpreter": sys.executable,
                        "clusterlab_shared_kernel": True,
                        "clusterlab_state_dir": str(state),
                        "rook_replica_size": 2,
                        "rook_mon_count": 1,
                    },
                    "hosts": {n: None for n in nodes},
                    "children": {
                        "kube_control_plane": {"hosts": {"node1": None}},
                        "k8s_cluster": {"hosts": {n: None for n in nodes}},
                    },
                }
            }
        )
    )
    res = run_playbook(FIXTURE, inv, {"out_dir": str(tmp_path / "out"), "probe": True})
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    want = cephclient.choose({n: hostkernel.ceph_client_features() for n in nodes})
    files = read_files(tmp_path / "out" / "rook")
    docs = docs_of(files)
    assert (
        find(docs, "StorageClass", "rook-cephfs")["parameters"].get("mounter", "kernel")
        == (want["cephfs_mounter"])
    )
    warnings = state / "warnings" / "ceph_storage.txt"
    if want["warnings"]:
        lines = warnings.read_text().splitlines()
        assert len(lines) == len(want["warnings"])
        assert lines[0].startswith("RBD: node1, node2: ")
        assert "share this machine's kernel" in lines[0]
        assert "WARNING: RBD: node1, node2" in res.stdout
    else:
        assert not warnings.exists()
