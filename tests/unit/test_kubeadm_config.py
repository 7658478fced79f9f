"""kubeadm configuration of every example lab, rendered by `clusterlab manifests` (the stage's
own role and template) and checked against kubeadm's, the kubelet's and kube-proxy's v1.35 types
(strict JSON Schemas, see tests/fixtures/kubernetes-v1.35/SOURCE.md), plus what each lab needs.
"""

from __future__ import annotations

import copy
import json
import re

import jsonschema
import pytest
import yaml

from clusterlab import hostkernel, manifests, paths
from clusterlab.spec import load_spec_file

LABS = sorted(p.parent.name for p in paths.INVENTORIES.glob("*/lab.yml"))
SCHEMAS_DIR = paths.ROOT / "tests" / "fixtures" / "kubernetes-v1.35"
SHARED_SCHEMAS = paths.ROOT.parent / "shared" / "reference" / "kubernetes-v1.35"
CRI_SOCKET = "unix:///run/containerd/containerd.sock"
INIT_KINDS = [
    "InitConfiguration",
    "ClusterConfiguration",
    "KubeletConfiguration",
    "KubeProxyConfiguration",
]


@pytest.fixture(scope="module")
def validators() -> dict[str, jsonschema.Draft202012Validator]:
    schemas = json.loads((SCHEMAS_DIR / "config-schemas.json").read_text())
    for schema in schemas.values():
        jsonschema.Draft202012Validator.check_schema(schema)
    return {key: jsonschema.Draft202012Validator(schema) for key, schema in schemas.items()}


def schema_problems(validators, doc: dict) -> list[str]:
    key = f"{doc.get('apiVersion')}/{doc.get('kind')}"
    if key not in validators:
        return [f"no schema for {key}"]
    return [
        f"{'.'.join(str(p) for p in e.absolute_path) or '<root>'}: {e.message}"
        for e in validators[key].iter_errors(doc)
    ]


def render_lab(spec: dict, out, monkeypatch) -> dict[str, list[dict]]:
    """Render with an empty state root (a lab that is up must not change the result)."""
    state = out.parent / f"{out.name}-state"
    monkeypatch.setenv("CLUSTERLAB_STATE", str(state))
    files = manifests.render(spec, out, tags=["kubeadm"])
    assert not state.exists(), "manifests created a state dir"
    assert files == sorted(f for f in out.rglob("*") if f.is_file() and f.name != "notes.txt")
    kubeadm = [f for f in files if f.parent == out / "kubeadm"]
    return {f.stem: list(yaml.safe_load_all(f.read_text())) for f in kubeadm}


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """lab -> (spec, {node: [documents]}, out dir); one ansible-playbook run per lab."""
    out: dict = {}

    def get(lab: str):
        if lab not in out:
            spec = load_spec_file(paths.lab_spec_file(lab))
            target = tmp_path_factory.mktemp(lab) / "out"
            # A stale node file goes, anything beside the manifests' folders stays.
            (target / "kubeadm").mkdir(parents=True)
            (target / "kubeadm" / "gone-node.yaml").write_text("stale\n")
            (target / "notes.txt").write_text("mine\n")
            with pytest.MonkeyPatch.context() as mp:
                out[lab] = (spec, render_lab(spec, target, mp), target)
        return out[lab]

    return get


def by_kind(docs: list[dict]) -> dict[str, dict]:
    return {d["kind"]: d for d in docs}


def kubelet_args(node_registration: dict) -> dict[str, str]:
    return {a["name"]: a["value"] for a in node_registration["kubeletExtraArgs"]}


@pytest.mark.parametrize("lab", LABS)
def test_every_document_passes_the_v135_schema(lab, rendered, validators):
    _spec, nodes, _out = rendered(lab)
    for node, docs in nodes.items():
        for doc in docs:
            assert schema_problems(validators, doc) == [], f"{lab}/{node} {doc.get('kind')}"


@pytest.mark.parametrize("lab", LABS)
def test_one_file_per_node_init_on_first_control_plane_join_elsewhere(lab, rendered):
    spec, nodes, out = rendered(lab)
    assert sorted(nodes) == sorted(n["name"] for n in spec["nodes"])
    assert not (out / "kubeadm" / "gone-node.yaml").exists()
    assert (out / "notes.txt").read_text() == "mine\n"
    first_cp = next(n["name"] for n in spec["nodes"] if "control_plane" in n["roles"])
    for node, docs in nodes.items():
        kinds = [d["kind"] for d in docs]
        assert kinds == (INIT_KINDS if node == first_cp else ["JoinConfiguration"]), node
        text = (out / "kubeadm" / f"{node}.yaml").read_text()
        assert text.startswith("# kubeadm configuration of"), node
        assert "placeholders" in text.split("apiVersion")[0]
        assert (out / "kubeadm" / f"{node}.yaml").stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize("lab", LABS)
def test_addresses_and_node_ip_are_the_lab_addresses(lab, rendered):
    spec, nodes, _out = rendered(lab)
    first_cp = next(n for n in spec["nodes"] if "control_plane" in n["roles"])
    endpoint = f"{first_cp['address']}:6443"
    for node in spec["nodes"]:
        docs = by_kind(nodes[node["name"]])
        main = docs.get("InitConfiguration") or docs["JoinConfiguration"]
        reg = main["nodeRegistration"]
        assert reg["name"] == node["name"]
        assert kubelet_args(reg)["node-ip"] == node["address"]
        assert reg["criSocket"] == CRI_SOCKET
        if "InitConfiguration" in docs:
            assert main["localAPIEndpoint"] == {
                "advertiseAddress": node["address"],
                "bindPort": 6443,
            }
            cluster = docs["ClusterConfiguration"]
            assert cluster["controlPlaneEndpoint"] == endpoint
            sans = cluster["apiServer"]["certSANs"]
            assert {node["address"], node["name"], "127.0.0.1", "localhost"} <= set(sans)
            assert len(sans) == len(set(sans))
        else:
            assert main["discovery"]["bootstrapToken"]["apiServerEndpoint"] == endpoint


@pytest.mark.parametrize("lab", LABS)
def test_cluster_networks_version_and_kubelet(lab, rendered):
    spec, nodes, _out = rendered(lab)
    first_cp = next(n["name"] for n in spec["nodes"] if "control_plane" in n["roles"])
    docs = by_kind(nodes[first_cp])
    cluster = docs["ClusterConfiguration"]
    kube = spec["kubernetes"]
    assert cluster["networking"]["podSubnet"] == kube["pod_cidr"]
    assert cluster["networking"]["serviceSubnet"] == kube["service_cidr"]
    assert cluster["kubernetesVersion"] == f"v{kube['version']}"
    assert cluster["clusterName"] == spec["name"]
    assert "local" in cluster["etcd"]
    assert "external" not in cluster["etcd"]
    kubelet = docs["KubeletConfiguration"]
    assert kubelet["cgroupDriver"] == "systemd"
    assert kubelet["containerRuntimeEndpoint"] == CRI_SOCKET
    assert kubelet["failCgroupV1"] is False
    proxy = docs["KubeProxyConfiguration"]
    assert proxy["mode"] in ("iptables", "nftables")
    assert proxy["clusterCIDR"] == kube["pod_cidr"]
    token = docs["InitConfiguration"]["bootstrapTokens"][0]["token"]
    assert re.fullmatch(r"[a-z0-9]{6}\.[a-z0-9]{16}", token)


@pytest.mark.parametrize("lab", LABS)
def test_join_verifies_the_ca(lab, rendered):
    _spec, nodes, _out = rendered(lab)
    joins = [by_kind(d)["JoinConfiguration"] for d in nodes.values() if len(d) == 1]
    assert joins, "every example lab has joining nodes"
    for join in joins:
        discovery = join["discovery"]["bootstrapToken"]
        assert "unsafeSkipCAVerification" not in discovery
        assert [h for h in discovery["caCertHashes"] if re.fullmatch(r"sha256:[0-9a-f]{64}", h)]
        assert "controlPlane" not in join
        assert "taints" not in join["nodeRegistration"]


@pytest.mark.parametrize("lab", LABS)
def test_control_plane_that_is_a_worker_is_schedulable(lab, rendered):
    spec, nodes, _out = rendered(lab)
    first_cp = next(n for n in spec["nodes"] if "control_plane" in n["roles"])
    assert "worker" in first_cp["roles"]  # true of every example lab
    init = by_kind(nodes[first_cp["name"]])["InitConfiguration"]
    assert init["nodeRegistration"]["taints"] == []


def test_control_plane_only_node_keeps_the_noschedule_taint(tmp_path, monkeypatch, validators):
    spec = copy.deepcopy(load_spec_file(paths.lab_spec_file("static-sample")))
    spec["nodes"][0]["roles"] = ["control_plane", "etcd"]
    nodes = render_lab(spec, tmp_path / "out", monkeypatch)
    init = by_kind(nodes[spec["nodes"][0]["name"]])["InitConfiguration"]
    assert init["nodeRegistration"]["taints"] == [
        {"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}
    ]
    assert schema_problems(validators, init) == []


@pytest.mark.parametrize("lab", LABS)
def test_shared_kernel_profile_only_on_local_labs(lab, rendered):
    spec, nodes, _out = rendered(lab)
    local = spec["provider"] == "local"
    first_cp = next(n["name"] for n in spec["nodes"] if "control_plane" in n["roles"])
    docs = by_kind(nodes[first_cp])
    kubelet, proxy = docs["KubeletConfiguration"], docs["KubeProxyConfiguration"]
    if local:
        assert "cgroupRoot" not in kubelet  # the kubelet refuses a root that does not exist
        assert kubelet["failSwapOn"] is False
        assert kubelet["imageGCHighThresholdPercent"] == 100
        assert kubelet["evictionHard"] == {
            "nodefs.available": "0%",
            "nodefs.inodesFree": "0%",
            "imagefs.available": "0%",
        }
        assert proxy["conntrack"] == {"maxPerCore": 0}
        assert proxy[proxy["mode"]] == {"minSyncPeriod": "1s"}
    else:
        for key in ("cgroupRoot", "failSwapOn", "imageGCHighThresholdPercent", "evictionHard"):
            assert key not in kubelet, key
        assert "conntrack" not in proxy
        assert proxy["mode"] not in proxy
    cgroup_v1 = local and hostkernel.cgroup_v1()
    for node, docs_of_node in nodes.items():
        main = by_kind(docs_of_node).get("InitConfiguration") or docs_of_node[0]
        assert main.get("skipPhases", []) == (["preflight"] if local else []), node
        ignored = main["nodeRegistration"].get("ignorePreflightErrors", [])
        assert ignored == (["SystemVerification"] if cgroup_v1 else []), node


def test_user_group_vars_reach_the_rendered_configuration(tmp_path, monkeypatch, validators):
    """inventories/<lab>/group_vars/ apply to manifests exactly as to the stage."""
    lab_dir = tmp_path / "inventories" / "default"
    (lab_dir / "group_vars").mkdir(parents=True)
    (lab_dir / "group_vars" / "all.yml").write_text("clusterlab_kube_proxy_mode: nftables\n")
    (lab_dir / "lab.yml").write_text(paths.lab_spec_file("default").read_text())
    monkeypatch.chdir(tmp_path)  # ./inventories/default shadows the example
    spec = load_spec_file(lab_dir / "lab.yml")
    nodes = render_lab(spec, tmp_path / "out", monkeypatch)
    proxy = by_kind(nodes["node1"])["KubeProxyConfiguration"]
    assert proxy["mode"] == "nftables"
    assert proxy["nftables"] == {"minSyncPeriod": "1s"}
    assert schema_problems(validators, proxy) == []


def test_a_failed_render_says_why(tmp_path, monkeypatch):
    lab_dir = tmp_path / "inventories" / "default"
    (lab_dir / "group_vars").mkdir(parents=True)
    (lab_dir / "group_vars" / "all.yml").write_text(
        "clusterlab_cri_socket: '{{ no_such_variable }}'\n"
    )
    (lab_dir / "lab.yml").write_text(paths.lab_spec_file("default").read_text())
    monkeypatch.chdir(tmp_path)  # ./inventories/default shadows the example
    spec = load_spec_file(lab_dir / "lab.yml")
    with pytest.raises(manifests.ManifestsError, match=r"(?s)lab default failed.*no_such_variable"):
        render_lab(spec, tmp_path / "out", monkeypatch)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("kind", "doc", "problem"),
    [
        (
            "JoinConfiguration",
            {"discovery": {"bootstrapToken": {"token": "x", "caCertHash": ["sha256:0"]}}},
            "caCertHash",
        ),
        ("InitConfiguration", {"nodeRegistration": {"kubeletExtraArgs": {"node-ip": "x"}}}, ""),
        ("KubeletConfiguration", {"failCgroupV1": "false"}, "is not of type"),
        ("KubeProxyConfiguration", {"conntrack": {"maxPerCore": 0, "max": 1}}, "max"),
        ("InitConfiguration", {"bootstrapTokens": [{"token": "ABCDEF.0123456789abcdef"}]}, ""),
    ],
)
def test_the_validator_refuses_unknown_fields_and_wrong_types(validators, kind, doc, problem):
    api = {
        "JoinConfiguration": "kubeadm.k8s.io/v1beta4",
        "InitConfiguration": "kubeadm.k8s.io/v1beta4",
        "KubeletConfiguration": "kubelet.config.k8s.io/v1beta1",
        "KubeProxyConfiguration": "kubeproxy.config.k8s.io/v1alpha1",
    }[kind]
    problems = schema_problems(validators, {"apiVersion": api, "kind": kind, **doc})
    assert problems
    assert any(problem in p for p in problems), problems


def test_schema_copy_equals_the_shared_reference():
    shared = SHARED_SCHEMAS / "config-schemas.json"
    if not shared.exists():
        pytest.skip(f"{shared} is not on this machine")
    assert (SCHEMAS_DIR / "config-schemas.json").read_bytes() == shared.read_bytes()


FLEX_DEFAULT = "/usr/libexec/kubernetes/kubelet-plugins/volume/exec"


@pytest.mark.parametrize("lab", LABS)
def test_flexvolume_dir_is_writable_where_usr_is_read_only(lab, rendered, validators):
    """kubeadm mounts the controller manager's flex-volume-plugin-dir (default under /usr/libexec)
    as DirectoryOrCreate; on Flatcar's read-only /usr that mkdir fails and init times out
    (kubernetes/kubeadm#3318). kubeadm's troubleshooting page sets it, and the kubelet's
    volumePluginDir, under /opt/libexec; other systems keep kubeadm's default."""
    spec, nodes, _out = rendered(lab)
    first_cp = next(n["name"] for n in spec["nodes"] if "control_plane" in n["roles"])
    docs = by_kind(nodes[first_cp])
    cluster, kubelet = docs["ClusterConfiguration"], docs["KubeletConfiguration"]
    args = {
        a["name"]: a["value"] for a in cluster.get("controllerManager", {}).get("extraArgs", [])
    }
    if spec["os"] in ("flatcar", "fedora_coreos"):
        wanted = "/opt/libexec/kubernetes/kubelet-plugins/volume/exec"
        assert args.get("flex-volume-plugin-dir") == wanted
        assert kubelet.get("volumePluginDir") == wanted
    else:
        assert "flex-volume-plugin-dir" not in args
        assert kubelet.get("volumePluginDir", FLEX_DEFAULT) == FLEX_DEFAULT
    for doc in (cluster, kubelet):
        assert schema_problems(validators, doc) == []


@pytest.mark.parametrize("lab", LABS)
def test_kubeadm_picks_its_own_etcd_and_coredns_tags(lab, rendered):
    """The release table's etcd/CoreDNS tags were copied from the previous patch: forcing them
    with imageTag overrides what kubeadm of this release pulls (its constants). Not forced."""
    spec, nodes, _out = rendered(lab)
    first_cp = next(n["name"] for n in spec["nodes"] if "control_plane" in n["roles"])
    cluster = by_kind(nodes[first_cp])["ClusterConfiguration"]
    assert "imageTag" not in cluster["etcd"]["local"]
    assert "imageTag" not in cluster.get("dns", {})
    assert "dns" not in cluster  # default registry: kubeadm's registry.k8s.io/coredns/coredns


def test_coredns_keeps_upstream_path_under_a_mirror(tmp_path, monkeypatch, validators):
    """With artifacts.image_registry kubeadm would pull <registry>/coredns:<tag> (GetDNSImage
    adds /coredns only for registry.k8s.io); the artifact list and a flat mirror have
    <registry>/coredns/coredns, as registry.k8s.io has it."""
    spec = copy.deepcopy(load_spec_file(paths.lab_spec_file("static-sample")))
    spec["artifacts"]["image_registry"] = "mirror.example:5000"
    nodes = render_lab(spec, tmp_path / "out", monkeypatch)
    first_cp = next(n["name"] for n in spec["nodes"] if "control_plane" in n["roles"])
    cluster = by_kind(nodes[first_cp])["ClusterConfiguration"]
    assert cluster["imageRepository"] == "mirror.example:5000"
    assert cluster["dns"] == {"imageRepository": "mirror.example:5000/coredns"}
    assert schema_problems(validators, cluster) == []
