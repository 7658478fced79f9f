"""The Rook stage's manifests for every example lab, in host and in pvc mode, rendered by
`clusterlab manifests` (the stage's own roles and templates): every custom object checked
strictly against the CRD schemas of Rook v1.20.6 (tests/fixtures/rook-v1.20.6/SOURCE.md),
every core object with kubernetes-validate at the lab's minor, and what each lab needs of
them (disks by node, device sets, PVs, mons, replicas, operator settings).
"""

from __future__ import annotations

import copy
import hashlib
import importlib
import re
import sys
from pathlib import Path

import kubernetes_validate
import pytest
import rookschema
import yaml
from kubernetes_validate.utils import latest_version, major_minor

from clusterlab import inventory, manifests, paths, rook
from clusterlab.providers import get_provider
from clusterlab.spec import normalize

LABS = sorted(p.parent.name for p in paths.INVENTORIES.glob("*/lab.yml"))
MODES = ["host", "pvc"]
FIXTURES = paths.ROOT / "tests" / "fixtures" / "rook-v1.20.6"
SHARED = paths.ROOT.parent / "shared" / "reference" / "rook-v1.20.6"
CUSTOM_GROUPS = ("ceph.rook.io", "objectbucket.io")
UNKNOWN_DISK_SIZE = 10737418240  # ceph_cluster_unknown_disk_size
UPSTREAM_FILES = {"crds.yaml", "common.yaml", "csi-operator.yaml", "operator.yaml"}


# ---------------------------------------------------------------- strict CRD schemas


def crd_problems(doc: dict) -> list[str]:
    return rookschema.problems(doc)


def schema_minor(kube_version: str) -> str:
    """The lab's minor, or the newest kubernetes-validate ships when the lab's is newer."""
    return str(min(major_minor(kube_version), latest_version()))


# ---------------------------------------------------------------- rendering


def lab_spec(lab: str, **rook_overrides) -> dict:
    """The lab's spec with rook.* overridden, validated as `clusterlab` would."""
    raw = yaml.safe_load(paths.lab_spec_file(lab).read_text())
    raw = copy.deepcopy(raw)
    raw.setdefault("rook", {}).update(rook_overrides)
    return normalize(raw)


class Rendered:
    """One lab's rook/ folder and the inventory it was rendered from."""

    def __init__(self, spec: dict, out: Path):
        self.spec = spec
        self.out = out
        self.files = manifests.render(spec, out, tags=["rook"])
        self.inv = inventory.render(spec, get_provider(spec).planned_connections())["all"]
        self.docs = {
            f.name: [d for d in yaml.safe_load_all(f.read_text()) if d]
            for f in self.files
            if f.suffix == ".yaml"
        }

    def all_docs(self) -> list[dict]:
        return [d for docs in self.docs.values() for d in docs]

    def one(self, kind: str) -> dict:
        (doc,) = [d for d in self.all_docs() if d["kind"] == kind]
        return doc

    def ceph_disks(self) -> dict[str, list[str]]:
        """host -> kernel names of the disks the inventory gives Ceph, after the filter."""
        pattern = re.compile(self.spec["rook"]["device_filter"] or "")
        osd_hosts = self.inv["children"]["ceph_osd"]["hosts"] or {}
        out = {}
        for host in osd_hosts:
            names = [rook.device_name(p) for p in self.inv["hosts"][host]["lab_disks"]]
            kept = [n for n in names if pattern.search(n)]
            if kept:
                out[host] = kept
        return out

    def disk_size(self, host: str, name: str) -> int:
        path = name if name.startswith("/dev/") else f"/dev/{name}"
        return self.inv["hosts"][host].get("lab_disk_sizes", {}).get(path, 0)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """(lab, mode, **rook overrides) -> Rendered; one ansible-playbook run each, with empty
    state and cache roots (a lab that is up, or a warm cache, must not change the result)."""
    cache: dict = {}
    root = tmp_path_factory.mktemp("rook")

    def get(lab: str, mode: str, **overrides) -> Rendered:
        key = (lab, mode, tuple(sorted(overrides.items())))
        if key not in cache:
            case = root / f"{lab}-{mode}-{len(cache)}"
            with pytest.MonkeyPatch.context() as mp:
                mp.setenv("CLUSTERLAB_STATE", str(case / "state"))
                mp.setenv("CLUSTERLAB_CACHE", str(case / "cache"))
                spec = lab_spec(lab, mode=mode, **overrides)
                cache[key] = Rendered(spec, case / "out")
                assert not (case / "state").exists(), "manifests created a state dir"
        return cache[key]

    return get


CASES = [pytest.param(lab, mode, id=f"{lab}-{mode}") for lab in LABS for mode in MODES]


# ---------------------------------------------------------------- schemas


@pytest.mark.parametrize(("lab", "mode"), CASES)
def test_custom_objects_pass_the_crd_schemas_strictly(lab, mode, rendered):
    r = rendered(lab, mode)
    custom = [d for d in r.all_docs() if d["apiVersion"].split("/")[0] in CUSTOM_GROUPS]
    assert "CephCluster" in [d["kind"] for d in custom]
    for doc in custom:
        assert crd_problems(doc) == [], f"{lab} {mode} {doc['kind']}"


@pytest.mark.parametrize(("lab", "mode"), CASES)
def test_core_objects_pass_kubernetes_validate_at_the_lab_minor(lab, mode, rendered):
    r = rendered(lab, mode)
    want = schema_minor(r.spec["kubernetes"]["version"])
    core = [d for d in r.all_docs() if d["apiVersion"].split("/")[0] not in CUSTOM_GROUPS]
    assert {"ConfigMap", "Deployment"} <= {d["kind"] for d in core}
    for doc in core:
        used = kubernetes_validate.validate(doc, want, strict=True)
        assert used == want, f"{doc['kind']} validated against {used}, not {want}"


def test_the_strict_check_refuses_unknown_fields_and_wrong_types():
    cluster = {
        "apiVersion": "ceph.rook.io/v1",
        "kind": "CephCluster",
        "metadata": {"name": "rook-ceph", "namespace": "rook-ceph"},
        "spec": {
            "cephVersion": {"image": "quay.io/ceph/ceph:v20.2.4"},
            "dataDirHostPath": "/var/lib/rook",
            "mon": {"count": 3},
            "storage": {
                "useAllNodes": False,
                "nodes": [{"name": "n1", "devices": [{"name": "sdb"}]}],
            },
        },
    }
    assert crd_problems(cluster) == []
    unknown = copy.deepcopy(cluster)
    unknown["spec"]["storage"]["nodes"][0]["devices"][0]["size"] = "10G"
    assert any("'size' was unexpected" in p for p in crd_problems(unknown))
    wrong = copy.deepcopy(cluster)
    wrong["spec"]["mon"]["count"] = "3"
    assert any(p.startswith("spec.mon.count") for p in crd_problems(wrong))
    # where the schema keeps unknown fields, they pass (spec.cephConfig is a string map)
    kept = copy.deepcopy(cluster)
    kept["spec"]["cephConfig"] = {"global": {"anything_at_all": "1"}}
    assert crd_problems(kept) == []


# ---------------------------------------------------------------- the cluster


@pytest.mark.parametrize(("lab", "mode"), CASES)
def test_mons_image_and_storage_selection(lab, mode, rendered):
    r = rendered(lab, mode)
    spec = r.one("CephCluster")["spec"]
    assert spec["mon"] == {
        "count": r.spec["rook"]["mon_count"],
        "allowMultiplePerNode": r.spec["rook"]["allow_multiple_per_node"],
    }
    assert spec["dataDirHostPath"] == r.spec["rook"]["data_dir_host_path"]
    assert spec["cephVersion"]["image"] == "quay.io/ceph/ceph:v20.2.4"
    assert "volumeClaimTemplate" not in spec["mon"]  # mons on hostPath in both modes
    storage = spec["storage"]
    assert storage["useAllNodes"] is False
    assert storage["useAllDevices"] is False
    text = yaml.safe_dump(storage)
    assert "deviceFilter" not in text
    assert "devicePathFilter" not in text


@pytest.mark.parametrize("lab", LABS)
def test_host_mode_names_exactly_the_inventory_disks_by_node(lab, rendered):
    r = rendered(lab, "host")
    storage = r.one("CephCluster")["spec"]["storage"]
    assert "storageClassDeviceSets" not in storage
    by_node = {n["name"]: [d["name"] for d in n["devices"]] for n in storage["nodes"]}
    assert by_node == r.ceph_disks()
    assert all(set(n) == {"name", "devices"} for n in storage["nodes"])
    assert "local-storage.yaml" not in r.docs


@pytest.mark.parametrize("lab", LABS)
def test_pvc_mode_one_device_set_and_one_local_pv_per_disk(lab, rendered):
    r = rendered(lab, "pvc")
    storage = r.one("CephCluster")["spec"]["storage"]
    assert "nodes" not in storage
    disks = [(host, name) for host, names in r.ceph_disks().items() for name in names]
    (device_set,) = storage["storageClassDeviceSets"]
    assert device_set["count"] == len(disks)
    assert device_set["portable"] is False
    (template,) = device_set["volumeClaimTemplates"]
    assert template["metadata"]["name"] == "data"
    assert template["spec"]["volumeMode"] == "Block"
    assert template["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert template["spec"]["storageClassName"] == "local-storage"

    local = r.docs["local-storage.yaml"]
    (sc,) = [d for d in local if d["kind"] == "StorageClass"]
    assert sc["metadata"]["name"] == "local-storage"
    assert sc["provisioner"] == "kubernetes.io/no-provisioner"
    assert sc["volumeBindingMode"] == "WaitForFirstConsumer"
    pvs = [d for d in local if d["kind"] == "PersistentVolume"]
    seen = []
    for pv in pvs:
        s = pv["spec"]
        (term,) = s["nodeAffinity"]["required"]["nodeSelectorTerms"]
        (expr,) = term["matchExpressions"]
        assert (expr["key"], expr["operator"]) == ("kubernetes.io/hostname", "In")
        (host,) = expr["values"]
        name = s["local"]["path"].removeprefix("/dev/")
        seen.append((host, name))
        assert s["volumeMode"] == "Block"
        assert s["storageClassName"] == "local-storage"
        assert s["accessModes"] == ["ReadWriteOnce"]
        size = r.disk_size(host, name) or UNKNOWN_DISK_SIZE
        assert int(s["capacity"]["storage"]) == size
        # every PV can hold any of the set's claims
        assert int(template["spec"]["resources"]["requests"]["storage"]) <= size
    assert sorted(seen) == sorted(disks)
    assert len({pv["metadata"]["name"] for pv in pvs}) == len(pvs)


@pytest.mark.parametrize(("lab", "mode"), CASES)
def test_replica_sizes_fit_the_osd_hosts(lab, mode, rendered):
    r = rendered(lab, mode)
    hosts = len(r.ceph_disks())
    sizes = []
    for doc in r.all_docs():
        if doc["kind"] not in ("CephBlockPool", "CephFilesystem", "CephObjectStore"):
            continue
        spec = doc["spec"]
        pools = [spec] if doc["kind"] == "CephBlockPool" else []
        pools += [spec[k] for k in ("metadataPool", "dataPool") if k in spec]
        pools += spec.get("dataPools", [])
        sizes += [p["replicated"]["size"] for p in pools if "replicated" in p]
    assert sizes, "no replicated pool rendered"
    assert all(1 <= s <= hosts for s in sizes), (sizes, hosts)
    assert set(sizes) == {r.spec["rook"]["replica_size"]}
    ceph_global = r.one("CephCluster")["spec"].get("cephConfig", {}).get("global", {})
    assert (ceph_global.get("mon_warn_on_pool_no_redundancy") == "false") == (
        r.spec["rook"]["replica_size"] == 1
    )
    # pools Ceph makes itself (and its TOO_FEW_OSDS check) follow the lab's size, not 3
    assert ceph_global["osd_pool_default_size"] == str(r.spec["rook"]["replica_size"])


def small_lab(nodes: int, disks_per_node: int) -> dict:
    raw = yaml.safe_load(paths.lab_spec_file("default").read_text())
    raw["nodes"] = {"count": nodes, "disks": [{"size": "6Gi"}] * disks_per_node}
    return normalize(raw)


@pytest.mark.parametrize(("nodes", "disks"), [(1, 1), (1, 2), (2, 1)])
def test_labs_below_three_osds_tell_ceph_their_pool_size(nodes, disks, tmp_path, monkeypatch):
    """Ceph's osd_pool_default_size is 3: with fewer OSDs it raises TOO_FEW_OSDS and the
    stage's HEALTH_OK wait never ends. cephConfig.global carries the lab's size instead,
    checked against the pinned CRD's cephConfig schema (map of maps of strings)."""
    monkeypatch.setenv("CLUSTERLAB_STATE", str(tmp_path / "state"))
    monkeypatch.setenv("CLUSTERLAB_CACHE", str(tmp_path / "cache"))
    spec = small_lab(nodes, disks)
    r = Rendered(spec, tmp_path / "out")
    cluster = r.one("CephCluster")
    size = spec["rook"]["replica_size"]
    assert size == min(3, nodes)
    assert cluster["spec"]["cephConfig"]["global"]["osd_pool_default_size"] == str(size)
    assert crd_problems(cluster) == []
    schema = rookschema.pinned()["schemas"]["ceph.rook.io/v1/CephCluster"]
    ceph_config = schema["properties"]["spec"]["properties"]["cephConfig"]
    assert ceph_config["additionalProperties"]["additionalProperties"]["type"] == "string"


def static_lab(devices: list[str]) -> dict:
    raw = yaml.safe_load(paths.lab_spec_file("static-sample").read_text())
    for node in raw["nodes"]:
        node["disks"] = [{"device": d} for d in devices]
    return normalize(raw)


def test_static_by_id_disks_are_named_whole_and_loop_disks_allowed(tmp_path, monkeypatch):
    """Rook matches a desired device against the disk's udev links only when its name starts
    with /dev/ (pkg/daemon/ceph/osd/daemon.go): by-id paths go whole, kernel names as names.
    A static lab with a loop disk gets ROOK_CEPH_ALLOW_LOOP_DEVICES like a local lab."""
    monkeypatch.setenv("CLUSTERLAB_STATE", str(tmp_path / "state"))
    monkeypatch.setenv("CLUSTERLAB_CACHE", str(tmp_path / "cache"))
    wwn = "/dev/disk/by-id/wwn-0x5000c500a1b2c3d4"
    r = Rendered(static_lab([wwn, "/dev/sdc", "/dev/loop7"]), tmp_path / "out")
    for node in r.one("CephCluster")["spec"]["storage"]["nodes"]:
        assert node["devices"] == [{"name": wwn}, {"name": "sdc"}, {"name": "loop7"}]
    (settings,) = r.docs["operator-settings.yaml"]
    assert settings["data"]["ROOK_CEPH_ALLOW_LOOP_DEVICES"] == "true"
    r2 = Rendered(static_lab(["/dev/sdb"]), tmp_path / "out2")
    (settings,) = r2.docs["operator-settings.yaml"]
    assert settings["data"]["ROOK_CEPH_ALLOW_LOOP_DEVICES"] == "false"


# ---------------------------------------------------------------- operator settings, toolbox


@pytest.mark.parametrize(("lab", "mode"), CASES)
def test_operator_settings_follow_provider_and_os_family(lab, mode, rendered):
    r = rendered(lab, mode)
    (settings,) = r.docs["operator-settings.yaml"]
    assert settings["metadata"] == {"name": "rook-ceph-operator-config", "namespace": "rook-ceph"}
    family = r.inv["vars"]["clusterlab_os_family"]
    assert settings["data"] == {
        "ROOK_CEPH_ALLOW_LOOP_DEVICES": (
            "true"
            if r.spec["provider"] == "local"
            or any(d["device"].startswith("/dev/loop") for n in r.spec["nodes"] for d in n["disks"])
            else "false"
        ),
        "ROOK_HOSTPATH_REQUIRES_PRIVILEGED": (
            "true" if family in ("redhat", "fedora_coreos") else "false"
        ),
        "ROOK_ENABLE_DISCOVERY_DAEMON": "false",
    }


@pytest.mark.parametrize("lab", LABS)
def test_toolbox_runs_the_cluster_image_from_rooks_secret_and_endpoints(lab, rendered):
    r = rendered(lab, "host")
    (tools,) = [d for d in r.docs["toolbox.yaml"] if d["kind"] == "Deployment"]
    assert tools["metadata"]["name"] == "rook-ceph-tools"
    assert tools["metadata"]["namespace"] == "rook-ceph"
    pod = tools["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == r.one("CephCluster")["spec"]["cephVersion"]["image"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["mon-secret"]["secret"]["secretName"] == "rook-ceph-mon"
    assert volumes["mon-endpoints"]["configMap"]["name"] == "rook-ceph-mon-endpoints"


@pytest.mark.parametrize("lab", LABS)
def test_rook_folder_has_only_what_clusterlab_renders(lab, rendered):
    r = rendered(lab, "host")
    names = {f.name for f in r.files}
    assert "README.txt" in names
    assert not names & UPSTREAM_FILES
    assert "CustomResourceDefinition" not in {d["kind"] for d in r.all_docs()}
    assert "not copied here" in (r.out / "rook" / "README.txt").read_text()


# ---------------------------------------------------------------- variants


def test_device_filter_only_narrows_each_hosts_disks(rendered):
    r = rendered("meetup-host", "host", device_filter="c$")
    storage = r.one("CephCluster")["spec"]["storage"]
    by_node = {n["name"]: [d["name"] for d in n["devices"]] for n in storage["nodes"]}
    assert by_node == {h: ["vdc"] for h in ("node1", "node2", "node3")}
    assert by_node == r.ceph_disks()
    p = rendered("meetup-host", "pvc", device_filter="c$")
    (device_set,) = p.one("CephCluster")["spec"]["storage"]["storageClassDeviceSets"]
    assert device_set["count"] == 3
    paths_ = [d["spec"]["local"]["path"] for d in p.docs["local-storage.yaml"][1:]]
    assert paths_ == ["/dev/vdc"] * 3


def test_a_filter_that_leaves_no_disk_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("CLUSTERLAB_STATE", str(tmp_path / "state"))
    monkeypatch.setenv("CLUSTERLAB_CACHE", str(tmp_path / "cache"))
    spec = lab_spec("meetup-host", mode="host", device_filter="^nvme")
    with pytest.raises(manifests.ManifestsError, match="No disk is left for Ceph"):
        manifests.render(spec, tmp_path / "out", tags=["rook"])


def test_pvc_mode_with_a_named_storage_class_makes_no_local_pvs(rendered):
    r = rendered("meetup-pvc", "pvc", storage_class="fast-block")
    assert "local-storage.yaml" not in r.docs
    (device_set,) = r.one("CephCluster")["spec"]["storage"]["storageClassDeviceSets"]
    (template,) = device_set["volumeClaimTemplates"]
    assert template["spec"]["storageClassName"] == "fast-block"
    assert device_set["count"] == 6


def test_an_image_mirror_serves_the_ceph_image(tmp_path):
    raw = yaml.safe_load(paths.lab_spec_file("default").read_text())
    raw.setdefault("artifacts", {})["image_registry"] = "registry.lab.test:5000"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CLUSTERLAB_STATE", str(tmp_path / "state"))
        mp.setenv("CLUSTERLAB_CACHE", str(tmp_path / "cache"))
        r = Rendered(normalize(raw), tmp_path / "out")
    image = "registry.lab.test:5000/ceph/ceph:v20.2.4"
    assert r.one("CephCluster")["spec"]["cephVersion"]["image"] == image
    (tools,) = r.docs["toolbox.yaml"]
    assert tools["spec"]["template"]["spec"]["containers"][0]["image"] == image


# ---------------------------------------------------------------- clusterlab.rook


def test_ceph_disks_narrow_name_and_size():
    got = rook.ceph_disks(
        {"n1": ["/dev/loop3", "/dev/loop12"], "n2": ["/dev/sdb"]},
        "loop1",
        {"n1": {"/dev/loop12": 5}},
    )
    assert got == [
        {"host": "n1", "name": "loop12", "path": "/dev/loop12", "size": 5, "pv": "n1-loop12"}
    ]
    assert [d["name"] for d in rook.ceph_disks({"n1": ["/dev/sdb", "/dev/sdc"]})] == ["sdb", "sdc"]
    with pytest.raises(rook.RookError, match="not a regular expression"):
        rook.ceph_disks({"n1": ["/dev/sdb"]}, "(")
    with pytest.raises(rook.RookError, match="not a /dev/ path"):
        rook.ceph_disks({"n1": ["sdb"]})


def test_device_names_keep_kernel_names_and_pass_other_paths_whole():
    assert rook.device_name("/dev/sdb") == "sdb"
    assert rook.device_name("/dev/nvme0n1") == "nvme0n1"
    assert rook.device_name("/dev/disk/by-id/wwn-0x5000c5") == "/dev/disk/by-id/wwn-0x5000c5"
    assert rook.device_name("/dev/mapper/vg-lv") == "/dev/mapper/vg-lv"
    (disk,) = rook.ceph_disks({"n1": ["/dev/disk/by-path/pci-0000:00:1f.2-ata-1"]})
    assert disk["name"] == "/dev/disk/by-path/pci-0000:00:1f.2-ata-1"
    assert disk["pv"] == "n1-disk-by-path-pci-0000-00-1f.2-ata-1"


OPERATOR_SHAPED = """\
apiVersion: v1
kind: ConfigMap
metadata: {name: rook-ceph-operator-config, namespace: rook-ceph}
data:
  ROOK_CEPH_ALLOW_LOOP_DEVICES: "false"
  ROOK_HOSTPATH_REQUIRES_PRIVILEGED: "false"
  ROOK_LOG_LEVEL: INFO
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: rook-ceph-operator, namespace: rook-ceph}
spec: {replicas: 1}
"""


@pytest.mark.parametrize("source", ["operator-shaped", "pinned operator.yaml"])
def test_without_settings_takes_out_only_the_labs_keys(source):
    """On a document of the operator manifest's shape (written here), and on the pinned
    operator.yaml itself where the project's shared reference is on this machine."""
    if source == "operator-shaped":
        text = OPERATOR_SHAPED
    elif (SHARED / "operator.yaml").exists():
        text = (SHARED / "operator.yaml").read_text()
    else:
        pytest.skip(f"{SHARED / 'operator.yaml'} is not on this machine")
    before = [d for d in yaml.safe_load_all(text) if d]
    keys = ["ROOK_CEPH_ALLOW_LOOP_DEVICES", "ROOK_HOSTPATH_REQUIRES_PRIVILEGED"]
    after = [d for d in yaml.safe_load_all(rook.without_settings(text, keys)) if d]
    assert len(after) == len(before)
    for old, new in zip(before, after, strict=True):
        if (old["kind"], old["metadata"]["name"]) == rook.OPERATOR_SETTINGS:
            assert "ROOK_CEPH_ALLOW_LOOP_DEVICES" in old["data"]
            assert new["data"] == {k: v for k, v in old["data"].items() if k not in keys}
        else:
            assert new == old


def test_without_settings_refuses_an_operator_manifest_it_does_not_know():
    text = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: other}\ndata: {}\n"
    with pytest.raises(rook.RookError, match="found 0"):
        rook.without_settings(text, ["ROOK_CEPH_ALLOW_LOOP_DEVICES"])


def test_crd_names_are_those_the_stage_waits_for():
    two = (
        "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\n"
        "metadata: {name: cephclusters.ceph.rook.io}\n---\n"
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: rook-ceph}\n---\n"
        "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\n"
        "metadata: {name: objectbucketclaims.objectbucket.io}\n"
    )
    assert sorted(rook.crd_names(two)) == [
        "cephclusters.ceph.rook.io",
        "objectbucketclaims.objectbucket.io",
    ]
    pinned = rookschema.pinned()["crds"]
    assert len(pinned) == 21
    if (SHARED / "crds.yaml").exists():
        assert sorted(rook.crd_names((SHARED / "crds.yaml").read_text())) == pinned


# ---------------------------------------------------------------- the pinned copies


def test_derived_schemas_are_those_of_the_release_the_stage_fetches():
    shared = SHARED / "crds.yaml"
    if not shared.exists():
        pytest.skip(f"{shared} is not on this machine")
    download = yaml.safe_load((paths.ROOT / "roles/common/download/defaults/main.yml").read_text())
    digest = hashlib.sha256(shared.read_bytes()).hexdigest()
    assert digest == download["download_table"]["rook_crds"]["sha256"]
    sys.path.insert(0, str(FIXTURES))
    try:
        derive = importlib.import_module("derive")
    finally:
        sys.path.remove(str(FIXTURES))
    assert derive.derive(shared.read_text()) == rookschema.pinned()
