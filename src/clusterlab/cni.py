"""The lab's CNI manifest: the pinned upstream manifest, changed where a lab needs it.

One transform, used by the Kubernetes stage and by `clusterlab manifests` (through the
Ansible filter in roles/kubernetes/cni): VXLAN encapsulation (IPIP, Geneve and WireGuard are
missing from many lab kernels), the spec's pod network, the lab network named explicitly as
the one that carries pod traffic, and the container runtime's CNI plugin directory.

Every object the transform must change is looked up by kind, namespace and name; when the
upstream manifest no longer has it, CniError says so: an unmodified manifest (IPIP, a
192.168.0.0/16 pool, whatever interface the default route uses) is never handed on.
"""

from __future__ import annotations

import copy
import ipaddress
import json
from collections.abc import Iterable
from typing import Any

import yaml

PLUGINS = ("calico", "flannel")
DEFAULT_CNI_BIN_DIR = "/opt/cni/bin"

# What the transform looks for in each upstream manifest: (kind, namespace, name).
CALICO_CONFIG = ("ConfigMap", "kube-system", "calico-config")
CALICO_NODE = ("DaemonSet", "kube-system", "calico-node")
FLANNEL_CONFIG = ("ConfigMap", "kube-flannel", "kube-flannel-cfg")
FLANNEL_DS = ("DaemonSet", "kube-flannel", "kube-flannel-ds")

# The DaemonSet whose rollout means "the pod network is up", per plugin.
DAEMONSETS = {"calico": CALICO_NODE, "flannel": FLANNEL_DS}

# flanneld flags that choose the interface; every one is replaced by --iface-can-reach.
FLANNEL_IFACE_FLAGS = ("--iface", "--iface-regex", "--iface-can-reach")


class CniError(Exception):
    pass


def daemonset(plugin: str) -> str:
    """'namespace/name' of the plugin's node DaemonSet (what the stage waits for)."""
    _, namespace, name = DAEMONSETS[_plugin(plugin)]
    return f"{namespace}/{name}"


def probe_address(lab_cidr: str, node_addresses: Iterable[str] = ()) -> str:
    """An address inside the lab network that is no node's own address.

    flanneld --iface-can-reach=ADDR takes the interface and source address of the kernel's
    route to ADDR (`ip route get ADDR`). For an address of the lab network that is the lab
    interface on every node, whatever its name (host0, eth1, enp0s8, ...) and whatever the
    default route is (a Vagrant NAT NIC, a static machine's uplink). A node's own address
    would resolve to `lo`, so node addresses are skipped. No packet is sent to it.
    """
    net = _network(lab_cidr, "lab network")
    taken = {ipaddress.ip_address(a) for a in node_addresses}
    for candidate in net.hosts():
        if candidate not in taken:
            return str(candidate)
    raise CniError(f"lab network {net} has no address left that is not a node's")


def customize(
    docs: list[dict[str, Any]],
    plugin: str,
    *,
    pod_cidr: str,
    lab_cidr: str,
    node_addresses: Iterable[str] = (),
    cni_bin_dir: str = DEFAULT_CNI_BIN_DIR,
) -> list[dict[str, Any]]:
    """The upstream manifest's documents -> the lab's (a changed copy; input untouched)."""
    pods = _network(pod_cidr, "pod network")
    lab = _network(lab_cidr, "lab network")
    if pods.overlaps(lab):
        raise CniError(f"pod network {pods} overlaps the lab network {lab}")
    out = [copy.deepcopy(d) for d in docs if d]
    if _plugin(plugin) == "calico":
        _calico(out, str(pods), str(lab), cni_bin_dir)
    else:
        _flannel(out, str(pods), probe_address(str(lab), node_addresses), cni_bin_dir)
    return out


def render(text: str, plugin: str, *, source: str = "", **params: Any) -> str:
    """Upstream manifest text -> the lab's manifest text (multi-document YAML)."""
    try:
        docs = [d for d in yaml.safe_load_all(text) if d]
    except yaml.YAMLError as exc:
        raise CniError(f"{plugin}: the upstream manifest is not YAML: {exc}") from exc
    if not docs or not all(isinstance(d, dict) for d in docs):
        raise CniError(f"{plugin}: the upstream manifest holds no Kubernetes objects")
    lab = customize(docs, plugin, **params)
    header = [
        f"# {plugin} for this lab, rendered by clusterlab from the pinned upstream manifest",
        *([f"# {source}"] if source else []),
        f"# Changed: VXLAN encapsulation, pod network {params['pod_cidr']},"
        f" lab network {params['lab_cidr']} carries pod traffic,"
        f" CNI plugins in {params.get('cni_bin_dir', DEFAULT_CNI_BIN_DIR)}.",
    ]
    body = yaml.dump_all(lab, Dumper=_Dumper, sort_keys=False, explicit_start=True, width=100)
    return "\n".join(header) + "\n" + body


# ---------------------------------------------------------------- per plugin


def _calico(docs: list[dict], pod_cidr: str, lab_cidr: str, cni_bin_dir: str) -> None:
    config = _find(docs, CALICO_CONFIG, "calico")
    config.setdefault("data", {})["calico_backend"] = "vxlan"  # no BIRD: VXLAN needs no BGP

    pod = _find(docs, CALICO_NODE, "calico")["spec"]["template"]["spec"]
    node = _container(pod, "calico-node", CALICO_NODE)
    _set_env(node, "CALICO_IPV4POOL_CIDR", pod_cidr)
    _set_env(node, "CALICO_IPV4POOL_IPIP", "Never")
    _set_env(node, "CALICO_IPV4POOL_VXLAN", "Always")
    _set_env(node, "IP_AUTODETECTION_METHOD", f"cidr={lab_cidr}")
    for probe in ("livenessProbe", "readinessProbe"):  # BIRD does not run: don't probe it
        command = node.get(probe, {}).get("exec", {}).get("command")
        if command:
            command[:] = [arg for arg in command if arg not in ("-bird-live", "-bird-ready")]
    _host_path(pod, "cni-bin-dir", cni_bin_dir, CALICO_NODE)


def _flannel(docs: list[dict], pod_cidr: str, probe: str, cni_bin_dir: str) -> None:
    config = _find(docs, FLANNEL_CONFIG, "flannel")
    try:
        net_conf = json.loads(config["data"]["net-conf.json"])
    except (KeyError, TypeError, json.JSONDecodeError) as exc:
        raise CniError(f"flannel: {_ref(FLANNEL_CONFIG)} has no readable net-conf.json") from exc
    net_conf["Network"] = pod_cidr
    backend = net_conf.get("Backend") if isinstance(net_conf.get("Backend"), dict) else {}
    if backend.get("Type") != "vxlan":
        backend = {}  # another backend's settings mean nothing to vxlan
    net_conf["Backend"] = {**backend, "Type": "vxlan"}
    config["data"]["net-conf.json"] = json.dumps(net_conf, indent=2) + "\n"

    pod = _find(docs, FLANNEL_DS, "flannel")["spec"]["template"]["spec"]
    flanneld = _container(pod, "kube-flannel", FLANNEL_DS)
    args = [a for a in flanneld.get("args", []) if a.split("=", 1)[0] not in FLANNEL_IFACE_FLAGS]
    flanneld["args"] = [*args, f"--iface-can-reach={probe}"]
    _host_path(pod, "cni-plugin", cni_bin_dir, FLANNEL_DS)


# ---------------------------------------------------------------- helpers


def _plugin(plugin: str) -> str:
    if plugin not in PLUGINS:
        raise CniError(f"unknown CNI plugin {plugin!r} (supported: {', '.join(PLUGINS)})")
    return plugin


def _network(cidr: str, what: str) -> ipaddress.IPv4Network:
    try:
        return ipaddress.IPv4Network(str(cidr))
    except ValueError as exc:
        raise CniError(f"{what} {cidr!r} is not an IPv4 CIDR: {exc}") from exc


def _ref(key: tuple[str, str, str]) -> str:
    kind, namespace, name = key
    return f"{kind} {namespace}/{name}"


def _find(docs: list[dict], key: tuple[str, str, str], plugin: str) -> dict:
    kind, namespace, name = key
    found = [
        d
        for d in docs
        if d.get("kind") == kind
        and (d.get("metadata") or {}).get("name") == name
        and (d.get("metadata") or {}).get("namespace", "default") == namespace
    ]
    if len(found) != 1:
        problem = "has no" if not found else f"has {len(found)} objects"
        raise CniError(
            f"{plugin}: the upstream manifest {problem} {_ref(key)}, which the lab's changes"
            " (VXLAN, pod network, interface) must be made in; the pinned manifest and"
            " clusterlab/cni.py disagree - nothing was rendered"
        )
    return found[0]


def _container(pod: dict, name: str, owner: tuple[str, str, str]) -> dict:
    for container in pod.get("containers", []):
        if container.get("name") == name:
            return container
    raise CniError(f"{_ref(owner)} has no container {name!r} in the upstream manifest")


def _set_env(container: dict, name: str, value: str) -> None:
    env = container.setdefault("env", [])
    for var in env:
        if var.get("name") == name:
            var.pop("valueFrom", None)
            var["value"] = value
            return
    env.append({"name": name, "value": value})


def _host_path(pod: dict, volume: str, path: str, owner: tuple[str, str, str]) -> None:
    for vol in pod.get("volumes", []):
        if vol.get("name") == volume and "hostPath" in vol:
            vol["hostPath"]["path"] = path
            return
    raise CniError(f"{_ref(owner)} has no hostPath volume {volume!r} in the upstream manifest")


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (CNI and net-conf JSON) as literal blocks, readable in review."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)
