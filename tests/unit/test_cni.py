"""The lab's CNI manifest: clusterlab.cni's transform, its Ansible filter and the manifests play.

The upstream manifests are never copied here. The documents below are written for these
tests with the shape the pinned upstream manifests have where the transform works (object
kinds, names and namespaces, container names, env names, probe flags, volume names, the
net-conf.json keys); everything else in them is ours. The output is validated strictly with
kubernetes-validate at each example lab's Kubernetes minor.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import socket
import sys
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import latest_version, major_minor
from localplay import run_playbook

from clusterlab import ansible, cni, inventory, paths, releases
from clusterlab.providers import get_provider
from clusterlab.spec import load_spec_file

LABS = sorted(p.parent.name for p in paths.INVENTORIES.glob("*/lab.yml"))
MANIFESTS_PLAY = paths.PLAYBOOKS / "manifests.yml"


# ---------------------------------------------------------------- upstream-shaped documents


def calico_docs() -> list[dict]:
    """ServiceAccount, ConfigMap calico-config and DaemonSet calico-node as upstream has them."""
    backend_ref = {"configMapKeyRef": {"name": "calico-config", "key": "calico_backend"}}
    mtu_ref = {"configMapKeyRef": {"name": "calico-config", "key": "veth_mtu"}}
    return [
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": "calico-node", "namespace": "kube-system"},
        },
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "calico-config", "namespace": "kube-system"},
            "data": {
                "typha_service_name": "none",
                "calico_backend": "bird",
                "veth_mtu": "0",
                "cni_network_config": '{\n  "name": "test-net",\n  "plugins": [{"type": "calico"}]\n}',
            },
        },
        {
            "apiVersion": "apps/v1",
            "kind": "DaemonSet",
            "metadata": {"name": "calico-node", "namespace": "kube-system"},
            "spec": {
                "selector": {"matchLabels": {"k8s-app": "calico-node"}},
                "template": {
                    "metadata": {"labels": {"k8s-app": "calico-node"}},
                    "spec": {
                        "hostNetwork": True,
                        "serviceAccountName": "calico-node",
                        "initContainers": [
                            {
                                "name": "install-cni",
                                "image": "example.test/cni:v0",
                                "command": ["/opt/cni/bin/install"],
                                "volumeMounts": [
                                    {"mountPath": "/host/opt/cni/bin", "name": "cni-bin-dir"},
                                    {"mountPath": "/host/etc/cni/net.d", "name": "cni-net-dir"},
                                ],
                            }
                        ],
                        "containers": [
                            {
                                "name": "calico-node",
                                "image": "example.test/node:v0",
                                "env": [
                                    {"name": "DATASTORE_TYPE", "value": "kubernetes"},
                                    {"name": "CALICO_NETWORKING_BACKEND", "valueFrom": backend_ref},
                                    {"name": "CLUSTER_TYPE", "value": "k8s,bgp"},
                                    {"name": "IP", "value": "autodetect"},
                                    {"name": "CALICO_IPV4POOL_IPIP", "value": "Always"},
                                    {"name": "CALICO_IPV4POOL_VXLAN", "value": "Never"},
                                    {"name": "CALICO_IPV6POOL_VXLAN", "value": "Never"},
                                    {"name": "FELIX_VXLANMTU", "valueFrom": mtu_ref},
                                    {"name": "FELIX_IPV6SUPPORT", "value": "false"},
                                ],
                                "livenessProbe": {
                                    "exec": {
                                        "command": ["/bin/calico-node", "-felix-live", "-bird-live"]
                                    },
                                    "periodSeconds": 10,
                                },
                                "readinessProbe": {
                                    "exec": {
                                        "command": [
                                            "/bin/calico-node",
                                            "-felix-ready",
                                            "-bird-ready",
                                        ]
                                    },
                                    "periodSeconds": 10,
                                },
                            }
                        ],
                        "volumes": [
                            {
                                "name": "cni-bin-dir",
                                "hostPath": {"path": "/opt/cni/bin", "type": "DirectoryOrCreate"},
                            },
                            {"name": "cni-net-dir", "hostPath": {"path": "/etc/cni/net.d"}},
                        ],
                    },
                },
            },
        },
    ]


def flannel_docs() -> list[dict]:
    """Namespace, ConfigMap kube-flannel-cfg and DaemonSet kube-flannel-ds as upstream has them."""
    net_conf = {"Network": "10.244.0.0/16", "EnableNFTables": False, "Backend": {"Type": "vxlan"}}
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "kube-flannel"}},
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "kube-flannel-cfg", "namespace": "kube-flannel"},
            "data": {
                "cni-conf.json": '{\n  "name": "test-net",\n  "plugins": [{"type": "flannel"}]\n}\n',
                "net-conf.json": json.dumps(net_conf, indent=2) + "\n",
            },
        },
        {
            "apiVersion": "apps/v1",
            "kind": "DaemonSet",
            "metadata": {"name": "kube-flannel-ds", "namespace": "kube-flannel"},
            "spec": {
                "selector": {"matchLabels": {"app": "flannel"}},
                "template": {
                    "metadata": {"labels": {"app": "flannel"}},
                    "spec": {
                        "hostNetwork": True,
                        "initContainers": [
                            {
                                "name": "install-cni-plugin",
                                "image": "example.test/cni-plugin:v0",
                                "command": ["cp"],
                                "args": ["-f", "/flannel", "/opt/cni/bin/flannel"],
                                "volumeMounts": [
                                    {"name": "cni-plugin", "mountPath": "/opt/cni/bin"}
                                ],
                            }
                        ],
                        "containers": [
                            {
                                "name": "kube-flannel",
                                "image": "example.test/flannel:v0",
                                "command": ["/opt/bin/flanneld"],
                                "args": ["--ip-masq", "--kube-subnet-mgr", "--healthz-port=8081"],
                            }
                        ],
                        "volumes": [
                            {"name": "cni-plugin", "hostPath": {"path": "/opt/cni/bin"}},
                            {"name": "flannel-cfg", "configMap": {"name": "kube-flannel-cfg"}},
                        ],
                    },
                },
            },
        },
    ]


UPSTREAM = {"calico": calico_docs, "flannel": flannel_docs}


# ---------------------------------------------------------------- helpers


def find(docs: list[dict], kind: str, name: str) -> dict:
    (doc,) = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    return doc


def pod_spec(docs: list[dict], name: str) -> dict:
    return find(docs, "DaemonSet", name)["spec"]["template"]["spec"]


def container(docs: list[dict], ds: str, name: str) -> dict:
    (c,) = [c for c in pod_spec(docs, ds)["containers"] if c["name"] == name]
    return c


def env(c: dict) -> dict[str, object]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in c["env"]}


def host_path(docs: list[dict], ds: str, volume: str) -> str:
    (v,) = [v for v in pod_spec(docs, ds)["volumes"] if v["name"] == volume]
    return v["hostPath"]["path"]


def schema_minor(kube_version: str) -> str:
    """The Kubernetes schema to validate against: the lab's minor when kubernetes-validate
    ships it (1.37.0 ships up to 1.37, so every supported lab minor has its own), else the
    newest it has below the lab's - validate() itself picks the newest schema not newer
    than asked for, but refuses versions above its latest."""
    lab = major_minor(kube_version)
    return str(min(lab, latest_version()))


def validate_all(docs: list[dict], kube_version: str) -> None:
    want = schema_minor(kube_version)
    for doc in docs:
        used = kubernetes_validate.validate(doc, want, strict=True)
        assert used == want, f"{doc['kind']} validated against {used}, not {want}"


def lab_params(lab: str) -> dict:
    spec = load_spec_file(paths.lab_spec_file(lab))
    return {
        "version": spec["kubernetes"]["version"],
        "plugin": spec["kubernetes"]["cni"],
        "pod_cidr": spec["kubernetes"]["pod_cidr"],
        "lab_cidr": spec["network"]["cidr"],
        "node_addresses": [n["address"] for n in spec["nodes"]],
    }


# ---------------------------------------------------------------- the transform


@pytest.mark.parametrize("lab", LABS)
def test_calico_for_every_lab_is_vxlan_in_the_pod_network_on_the_lab_network(lab):
    p = lab_params(lab)
    docs = cni.customize(
        calico_docs(),
        "calico",
        pod_cidr=p["pod_cidr"],
        lab_cidr=p["lab_cidr"],
        node_addresses=p["node_addresses"],
        cni_bin_dir="/usr/lib/cni",
    )
    assert find(docs, "ConfigMap", "calico-config")["data"]["calico_backend"] == "vxlan"
    node = container(docs, "calico-node", "calico-node")
    e = env(node)
    assert e["CALICO_IPV4POOL_CIDR"] == p["pod_cidr"]
    assert e["CALICO_IPV4POOL_IPIP"] == "Never"
    assert e["CALICO_IPV4POOL_VXLAN"] == "Always"
    assert e["IP_AUTODETECTION_METHOD"] == f"cidr={p['lab_cidr']}"
    assert e["IP"] == "autodetect"  # left as upstream has it: detection by the method above
    assert e["CALICO_NETWORKING_BACKEND"] == {  # still read from the ConfigMap (now vxlan)
        "configMapKeyRef": {"name": "calico-config", "key": "calico_backend"}
    }
    assert [x["name"] for x in node["env"]].count("CALICO_IPV4POOL_IPIP") == 1
    assert node["livenessProbe"]["exec"]["command"] == ["/bin/calico-node", "-felix-live"]
    assert node["readinessProbe"]["exec"]["command"] == ["/bin/calico-node", "-felix-ready"]
    assert host_path(docs, "calico-node", "cni-bin-dir") == "/usr/lib/cni"
    validate_all(docs, p["version"])


@pytest.mark.parametrize("lab", LABS)
def test_flannel_for_every_lab_is_vxlan_in_the_pod_network_on_the_lab_network(lab):
    p = lab_params(lab)
    docs = cni.customize(
        flannel_docs(),
        "flannel",
        pod_cidr=p["pod_cidr"],
        lab_cidr=p["lab_cidr"],
        node_addresses=p["node_addresses"],
    )
    net_conf = json.loads(find(docs, "ConfigMap", "kube-flannel-cfg")["data"]["net-conf.json"])
    assert net_conf == {
        "Network": p["pod_cidr"],
        "EnableNFTables": False,  # upstream's other settings stay
        "Backend": {"Type": "vxlan"},
    }
    args = container(docs, "kube-flannel-ds", "kube-flannel")["args"]
    reach = [a.split("=", 1)[1] for a in args if a.startswith("--iface")]
    assert len(reach) == 1
    assert args[:3] == ["--ip-masq", "--kube-subnet-mgr", "--healthz-port=8081"]
    assert args[3] == f"--iface-can-reach={reach[0]}"
    address = ipaddress.ip_address(reach[0])
    assert address in ipaddress.ip_network(p["lab_cidr"])
    assert reach[0] not in p["node_addresses"]  # a node's own address would route via lo
    assert host_path(docs, "kube-flannel-ds", "cni-plugin") == cni.DEFAULT_CNI_BIN_DIR
    validate_all(docs, p["version"])


def test_flannel_upstream_interface_flags_are_replaced():
    docs = flannel_docs()
    c = container(docs, "kube-flannel-ds", "kube-flannel")
    c["args"] += ["--iface=eth0", "--iface-regex=^en", "--iface-can-reach=1.1.1.1"]
    out = cni.customize(
        docs,
        "flannel",
        pod_cidr="10.233.64.0/18",
        lab_cidr="10.213.0.0/24",
        node_addresses=["10.213.0.1", "10.213.0.2"],
    )
    assert container(out, "kube-flannel-ds", "kube-flannel")["args"] == [
        "--ip-masq",
        "--kube-subnet-mgr",
        "--healthz-port=8081",
        "--iface-can-reach=10.213.0.3",
    ]


def test_flannel_other_backend_becomes_plain_vxlan():
    docs = flannel_docs()
    cfg = find(docs, "ConfigMap", "kube-flannel-cfg")
    cfg["data"]["net-conf.json"] = json.dumps(
        {"Network": "10.244.0.0/16", "Backend": {"Type": "ipip", "DirectRouting": True}}
    )
    out = cni.customize(docs, "flannel", pod_cidr="10.233.64.0/18", lab_cidr="10.213.0.0/24")
    net_conf = json.loads(find(out, "ConfigMap", "kube-flannel-cfg")["data"]["net-conf.json"])
    assert net_conf["Backend"] == {"Type": "vxlan"}


def test_upstream_documents_are_not_changed_in_place():
    docs = calico_docs()
    before = json.dumps(docs, sort_keys=True)
    cni.customize(docs, "calico", pod_cidr="10.233.64.0/18", lab_cidr="10.213.0.0/24")
    assert json.dumps(docs, sort_keys=True) == before


def drop(docs: list[dict], kind: str, name: str) -> list[dict]:
    return [d for d in docs if not (d["kind"] == kind and d["metadata"]["name"] == name)]


def rename_container(docs: list[dict], ds: str, new: str) -> list[dict]:
    pod_spec(docs, ds)["containers"][0]["name"] = new
    return docs


def drop_volume(docs: list[dict], ds: str, volume: str) -> list[dict]:
    spec = pod_spec(docs, ds)
    spec["volumes"] = [v for v in spec["volumes"] if v["name"] != volume]
    return docs


def moved_namespace(docs: list[dict], kind: str, name: str) -> list[dict]:
    find(docs, kind, name)["metadata"]["namespace"] = "elsewhere"
    return docs


def bad_net_conf(docs: list[dict]) -> list[dict]:
    find(docs, "ConfigMap", "kube-flannel-cfg")["data"]["net-conf.json"] = "{not json"
    return docs


@pytest.mark.parametrize(
    ("plugin", "broken", "message"),
    [
        (
            "calico",
            lambda d: drop(d, "DaemonSet", "calico-node"),
            "DaemonSet kube-system/calico-node",
        ),
        (
            "calico",
            lambda d: drop(d, "ConfigMap", "calico-config"),
            "ConfigMap kube-system/calico-config",
        ),
        ("calico", lambda d: moved_namespace(d, "DaemonSet", "calico-node"), "has no DaemonSet"),
        ("calico", lambda d: [*d, find(d, "DaemonSet", "calico-node")], "has 2 objects"),
        (
            "calico",
            lambda d: rename_container(d, "calico-node", "node"),
            "no container 'calico-node'",
        ),
        ("calico", lambda d: drop_volume(d, "calico-node", "cni-bin-dir"), "'cni-bin-dir'"),
        (
            "flannel",
            lambda d: drop(d, "DaemonSet", "kube-flannel-ds"),
            "DaemonSet kube-flannel/kube-flannel-ds",
        ),
        (
            "flannel",
            lambda d: drop(d, "ConfigMap", "kube-flannel-cfg"),
            "ConfigMap kube-flannel/kube-flannel-cfg",
        ),
        ("flannel", bad_net_conf, "no readable net-conf.json"),
        (
            "flannel",
            lambda d: rename_container(d, "kube-flannel-ds", "flanneld"),
            "no container 'kube-flannel'",
        ),
        ("flannel", lambda d: drop_volume(d, "kube-flannel-ds", "cni-plugin"), "'cni-plugin'"),
    ],
)
def test_a_missing_target_is_an_error_never_an_unchanged_manifest(plugin, broken, message):
    docs = broken(UPSTREAM[plugin]())
    with pytest.raises(cni.CniError, match=message.replace("(", r"\(")):
        cni.customize(docs, plugin, pod_cidr="10.233.64.0/18", lab_cidr="10.213.0.0/24")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"plugin": "weave"}, "unknown CNI plugin 'weave'"),
        ({"pod_cidr": "10.213.0.0/16"}, "overlaps the lab network"),
        ({"pod_cidr": "10.233.64.0/33"}, "pod network '10.233.64.0/33' is not an IPv4 CIDR"),
        ({"lab_cidr": "lab"}, "lab network 'lab' is not an IPv4 CIDR"),
    ],
)
def test_bad_parameters_are_refused(kwargs, message):
    args = {"plugin": "calico", "pod_cidr": "10.233.64.0/18", "lab_cidr": "10.213.0.0/24", **kwargs}
    with pytest.raises(cni.CniError, match=message):
        cni.customize(calico_docs(), args.pop("plugin"), **args)


def test_probe_address_skips_node_addresses_and_needs_a_free_one():
    assert cni.probe_address("10.213.0.0/24", ["10.213.0.11"]) == "10.213.0.1"
    assert cni.probe_address("10.213.0.0/24", ["10.213.0.1", "10.213.0.2"]) == "10.213.0.3"
    assert cni.probe_address("10.213.7.64/30", ["10.213.7.66"]) == "10.213.7.65"
    with pytest.raises(cni.CniError, match="no address left"):
        cni.probe_address("10.213.7.64/30", ["10.213.7.65", "10.213.7.66"])


def test_daemonset_names_what_the_stage_waits_for():
    assert cni.daemonset("calico") == "kube-system/calico-node"
    assert cni.daemonset("flannel") == "kube-flannel/kube-flannel-ds"


def test_render_writes_a_reviewable_multi_document_manifest():
    text = yaml.safe_dump_all(calico_docs(), sort_keys=False)
    params = {"pod_cidr": "10.233.64.0/18", "lab_cidr": "10.213.0.0/24", "cni_bin_dir": "/x/cni"}
    out = cni.render(text, "calico", source="https://example.test/calico.yaml", **params)
    lines = out.splitlines()
    assert lines[0].startswith("# calico for this lab")
    assert lines[1] == "# https://example.test/calico.yaml"
    assert "pod network 10.233.64.0/18" in lines[2]
    assert list(yaml.safe_load_all(out)) == cni.customize(calico_docs(), "calico", **params)
    assert "cni_network_config: |" in out  # multi-line JSON stays a readable block


@pytest.mark.parametrize("text", ["", "just text\n", "a: [unclosed\n"])
def test_render_refuses_what_is_not_a_manifest(text):
    with pytest.raises(cni.CniError, match="calico: the upstream manifest"):
        cni.render(text, "calico", pod_cidr="10.233.64.0/18", lab_cidr="10.213.0.0/24")


# ---------------------------------------------------------------- through Ansible


def closed_port_url(name: str) -> str:
    """An http URL on loopback where nothing listens: a download that fails at once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/upstream/{name}"


def run_manifests_play(tmp_path, lab: str, url: str, upstream: str, *, cached: bool) -> tuple:
    """`playbooks/manifests.yml --tags cni` for a lab's planned inventory, as `clusterlab
    manifests` runs it; the upstream manifest (pinned by its sha256) is in a test cache, or
    not, and its URL cannot be downloaded."""
    spec = load_spec_file(paths.lab_spec_file(lab))
    plugin = spec["kubernetes"]["cni"]
    item = f"{plugin}_manifest"
    cache = tmp_path / "cache"
    body = upstream.encode()
    if cached:
        (cache / item / "v-test").mkdir(parents=True, exist_ok=True)
        (cache / item / "v-test" / url.rpartition("/")[2]).write_bytes(body)
    hosts = tmp_path / "hosts.yml"
    hosts.write_text(
        yaml.safe_dump(inventory.render(spec, get_provider(spec).planned_connections()))
    )
    out = tmp_path / "out"
    extra = {
        "manifests_out_dir": str(out),
        "ansible_connection": "local",
        "ansible_python_interpreter": sys.executable,
        "download_cache_dir": str(cache),
        "download_table": {
            item: {
                "version": "v-test",
                "url": url,
                "sha256": hashlib.sha256(body).hexdigest(),
                "mode": "0644",
            }
        },
    }
    res = run_playbook(MANIFESTS_PLAY, hosts, extra, "--tags", "cni")
    return res, spec, out


def test_manifests_play_renders_cni_with_the_same_transform(tmp_path):
    upstream = yaml.safe_dump_all(calico_docs(), sort_keys=False)
    url = closed_port_url("calico.yaml")
    res, spec, out = run_manifests_play(tmp_path, "default", url, upstream, cached=True)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr
    assert spec["kubernetes"]["cni"] == "calico"
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == [
        "cni/calico.yaml"
    ]
    written = (out / "cni" / "calico.yaml").read_text()
    sha = hashlib.sha256(upstream.encode()).hexdigest()
    assert written == cni.render(
        upstream,
        "calico",
        source=f"{url} (sha256 {sha})",
        pod_cidr=spec["kubernetes"]["pod_cidr"],
        lab_cidr=spec["network"]["cidr"],
        node_addresses=[n["address"] for n in spec["nodes"]],
        # The container runtime role's decision for Debian 12 with Kubernetes <= 1.35:
        # the distribution's containerd, which takes CNI plugins from /usr/lib/cni.
        cni_bin_dir="/usr/lib/cni",
    )
    validate_all(list(yaml.safe_load_all(written)), spec["kubernetes"]["version"])

    again, *_ = run_manifests_play(tmp_path, "default", url, upstream, cached=True)
    assert again.returncode == 0, again.stdout[-3000:]
    assert ansible.recap(again.stdout)["node1"]["changed"] == 0
    assert not (out / "MISSING.txt").exists()


def test_manifests_play_reports_a_manifest_it_cannot_download(tmp_path):
    url = closed_port_url("calico.yaml")
    res, _, out = run_manifests_play(tmp_path, "default", url, "", cached=False)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr
    assert not (out / "cni").exists()
    (line,) = (out / "MISSING.txt").read_text().splitlines()
    assert line.startswith(f"cni/: needs {url} (cannot download: ")
    assert "Connection refused" in line


def test_manifests_play_fails_on_an_upstream_manifest_it_cannot_change(tmp_path):
    upstream = yaml.safe_dump_all(drop(calico_docs(), "DaemonSet", "calico-node"))
    url = closed_port_url("calico.yaml")
    res, _, out = run_manifests_play(tmp_path, "default", url, upstream, cached=True)
    assert res.returncode != 0
    assert "has no DaemonSet kube-system/calico-node" in res.stdout
    assert not (out / "cni" / "calico.yaml").exists()
    assert not (out / "MISSING.txt").exists()  # not mistaken for a download problem


# ---------------------------------------------------------------- the pinned upstream manifests


def pinned(item: str) -> dict:
    table = yaml.safe_load((paths.ROOT / "roles/common/download/defaults/main.yml").read_text())
    return table["download_table"][item]


@pytest.mark.parametrize("plugin", cni.PLUGINS)
def test_pinned_upstream_manifest_from_the_controller_cache(plugin):
    """Where `clusterlab manifests` or the stage has fetched the real manifest (a machine
    that reaches GitHub, or artifacts.mirror_url), the transform must still find everything
    it changes in it, and the result must be valid at every supported minor."""
    entry = pinned(f"{plugin}_manifest")
    cache = Path(load_spec_file(paths.lab_spec_file("default"))["artifacts"]["cache_dir"])
    cached = (
        cache.expanduser()
        / f"{plugin}_manifest"
        / entry["version"]
        / entry["url"].rpartition("/")[2]
    )
    if not cached.is_file():
        pytest.skip(
            f"{entry['url']} is not in the controller cache ({cached}); it is fetched there by `clusterlab manifests` where it can be downloaded"
        )
    text = cached.read_text()
    assert hashlib.sha256(text.encode()).hexdigest() == entry["sha256"]
    docs = list(yaml.safe_load_all(text))
    out = cni.customize(docs, plugin, pod_cidr="10.233.64.0/18", lab_cidr="10.213.0.0/24")
    for minor in releases.minors():
        validate_all(out, f"1.{minor}.0")
