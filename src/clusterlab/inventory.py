"""Lab spec + node connection data -> Kubespray-style YAML inventory."""

from __future__ import annotations

import functools
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from clusterlab import hostkernel, paths, serve
from clusterlab.oses import OSES
from clusterlab.yamltags import plain, wrap

__all__ = ["Connection", "group_vars", "plain", "render", "write"]

GROUPS_BY_ROLE = {"control_plane": "kube_control_plane", "etcd": "etcd", "worker": "kube_node"}

# A disk the provider names only when it attaches it (local: the loop device /dev/loopN):
# the planned inventory carries this placeholder (n = the disk's 1-based place on its node);
# the stages refuse it (validate_inventory), so they only ever run on the generated inventory.
PLANNED_DISK = "/dev/loop-assigned-at-up-{n}"
PLANNED_DISK_PREFIX = PLANNED_DISK.split("{", 1)[0]


@dataclass
class Connection:
    """How Ansible reaches one node."""

    host: str
    user: str = "root"
    port: int = 22
    key_file: str | None = None
    become: bool = False
    become_method: str = "sudo"


DOWNLOAD_TABLE = paths.ROOT / "roles" / "common" / "download" / "defaults" / "main.yml"
DISTRO_RUNTIME_VARS = paths.ROOT / "roles" / "prepare" / "container_runtime" / "vars"


@functools.cache
def _answers(url: str) -> bool:
    """A HEAD request to url succeeds (once per process; a machine without DNS fails at once)."""
    req = urllib.request.Request(url, method="HEAD")  # noqa: S310 - the table's https URL or the lab's mirror
    try:
        with urllib.request.urlopen(req, timeout=5):  # noqa: S310
            return True
    except (urllib.error.URLError, OSError, ValueError):
        return False


def containerd_downloadable(spec: dict) -> bool | None:
    """Whether the lab can have the downloaded containerd: it is in the controller's download
    cache, or the lab's files mirror (or the bundle) has it, or its upstream URL answers.
    None where the question does not arise (no distro containerd to fall back on, or a
    Kubernetes that needs containerd 2: decide.yml downloads it anyway)."""
    family = OSES[spec["os"]].family
    distro = DISTRO_RUNTIME_VARS / f"{family}.yml"
    if not distro.is_file() or int(spec["kubernetes"]["version"].split(".")[1]) > 35:
        return None
    if not (yaml.safe_load(distro.read_text()) or {}).get("container_runtime_distro_packages"):
        return None
    entry = yaml.safe_load(DOWNLOAD_TABLE.read_text())["download_table"]["containerd"]
    url = entry["url"]
    cached = paths.cached_download(spec, "containerd", entry["version"], url.rsplit("/", 1)[1])
    if cached.is_file():
        return True
    if spec["artifacts"].get("bundle"):
        bundle_dir = Path(os.path.expanduser(spec["artifacts"]["bundle"]))
        return url in serve.read_index(bundle_dir).get("files", {})
    mirror = spec["artifacts"].get("mirror_url")
    if mirror:
        return _answers(mirror.rstrip("/") + "/" + url.split("://", 1)[1])
    return _answers(url)


def group_vars(spec: dict) -> dict[str, Any]:
    """Variables every play sees, derived from the spec."""
    rook = spec["rook"]
    kube = spec["kubernetes"]
    state = paths.state_dir(spec["name"])
    os_info = OSES[spec["os"]]
    out = {
        "clusterlab_lab": spec["name"],
        "clusterlab_provider": spec["provider"],
        "clusterlab_os": spec["os"],
        "clusterlab_os_family": os_info.family,
        "clusterlab_cidr": spec["network"]["cidr"],
        "clusterlab_shared_kernel": spec["provider"] == "local",
        "clusterlab_cgroup_v1": spec["provider"] == "local" and hostkernel.cgroup_v1(),
        "kube_version": kube["version"],
        "kube_network_plugin": kube["cni"],
        "kube_pods_subnet": kube["pod_cidr"],
        "kube_service_addresses": kube["service_cidr"],
        "container_manager": "containerd",
        "rook_enabled": rook["enabled"],
        "rook_version": rook["version"],
        "rook_mode": rook["mode"],
        "rook_mon_count": rook["mon_count"],
        "rook_allow_multiple_per_node": rook["allow_multiple_per_node"],
        "rook_replica_size": rook["replica_size"],
        "rook_data_dir_host_path": rook["data_dir_host_path"],
        "rook_device_filter": rook["device_filter"] or "",
        "rook_storage_class": rook["storage_class"] or "",
        "artifacts_cache_dir": spec["artifacts"]["cache_dir"],
        "artifacts_mirror_url": spec["artifacts"]["mirror_url"] or "",
        "artifacts_image_registry": spec["artifacts"]["image_registry"] or "",
        # Controller side: the lab's state dir, its admin kubeconfig and the cached kubectl.
        "clusterlab_state_dir": str(state),
        "clusterlab_kubeconfig": str(state / "kubeconfig"),
        "clusterlab_kubectl": str(
            paths.cached_download(spec, "kubectl", kube["version"], "kubectl")
        ),
        "clusterlab_demos": spec["demos"],
    }
    if os_info.family == "flatcar":
        # Flatcar has no Python: bootstrap_os links a PyPy as /opt/bin/python in prepare, and
        # every later stage (a playbook run of its own) must use it; interpreter discovery
        # would settle on a /usr/bin/python3 that does not exist. Kubespray sets the same.
        out["ansible_python_interpreter"] = "/opt/bin/python"
    downloadable = containerd_downloadable(spec)
    if downloadable is not None:
        # container_runtime's auto: the downloaded containerd 2.x where the lab can have it,
        # else the distribution's (Debian 12: 1.6) — see roles/prepare/container_runtime.
        out["container_runtime_can_download"] = downloadable
    if spec["artifacts"].get("bundle"):
        # Served from the controller (serve.start): files mirror and registry mirrors.
        out.update(serve.mirror_vars(spec))
    elif spec["artifacts"]["image_registry"]:
        out["artifacts_registry_mirrors"] = image_registry_mirrors(spec)
    return out


def image_registry_mirrors(spec: dict) -> dict[str, str]:
    """artifacts.image_registry as containerd's mirror of every upstream registry the lab's
    images come from. The images clusterlab renders itself (kubeadm's, Ceph's, the demos')
    name the mirror directly; the CNI's, Rook's operator and ceph-csi's images are applied as
    upstream wrote them, so containerd must redirect their registries. The mirror holds an
    image under its upstream path without the registry host (quay.io/calico/node:TAG as
    MIRROR/calico/node:TAG), as for the images named directly. A mirror with a path
    (host/prefix) is that prefix's API root: override_path in hosts.toml (containerd's
    docs/hosts.md)."""
    host, _, prefix = spec["artifacts"]["image_registry"].partition("/")
    endpoint = f"https://{host}/v2/{prefix}" if prefix else f"https://{host}"
    return {upstream: endpoint for upstream in sorted(serve.lab_image_hosts(spec))}


def disk_paths(node: dict, attached: list[str] | None = None) -> list[str]:
    """Device path of each data disk of a spec node, in spec order: as attached by the
    provider when given, else the spec's, else the PLANNED_DISK placeholder."""
    if attached is not None:
        return list(attached)
    return [d["device"] or PLANNED_DISK.format(n=i + 1) for i, d in enumerate(node["disks"])]


def render(
    spec: dict,
    connections: dict[str, Connection],
    ssh_common_args: str = "",
    disks: dict[str, list[str]] | None = None,
) -> dict[str, Any]:
    """Inventory as a dict (YAML inventory plugin layout); its spec and bundle strings are
    yamltags.Unsafe (written `!unsafe`; `plain()` gives plain strings back).

    disks: node -> the device path of each of its data disks (spec order) as the provider
    attached them; without it, the spec's paths (placeholders where the provider names disks
    at `up`). Host vars lab_disks (Ceph disks) and lab_disk_sizes (path -> bytes, for the
    disks whose size the spec gives) use these paths.
    """
    hosts: dict[str, dict[str, Any]] = {}
    children: dict[str, dict[str, Any]] = {g: {"hosts": {}} for g in GROUPS_BY_ROLE.values()}
    children["ceph_osd"] = {"hosts": {}}
    for node in spec["nodes"]:
        conn = connections[node["name"]]
        ceph = [
            (path, d)
            for path, d in zip(
                disk_paths(node, (disks or {}).get(node["name"])), node["disks"], strict=True
            )
            if d["ceph"]
        ]
        hv: dict[str, Any] = {
            "ansible_host": conn.host,
            "ansible_user": conn.user,
            "ip": node["address"],
            "lab_disks": [path for path, _ in ceph],
            "lab_disk_sizes": {
                path: d["size_bytes"] for path, d in ceph if d.get("size_bytes") is not None
            },
        }
        if conn.port != 22:
            hv["ansible_port"] = conn.port
        if conn.key_file:
            hv["ansible_ssh_private_key_file"] = conn.key_file
        if conn.become:
            hv["ansible_become"] = True
            hv["ansible_become_method"] = conn.become_method
        hosts[node["name"]] = wrap(hv, skip_prefix="ansible_")
        for role in node["roles"]:
            children[GROUPS_BY_ROLE[role]]["hosts"][node["name"]] = None
        if hv["lab_disks"]:
            children["ceph_osd"]["hosts"][node["name"]] = None
    children["k8s_cluster"] = {"children": {"kube_control_plane": None, "kube_node": None}}
    # Every value from the spec or a bundle is data: `!unsafe` in hosts.yml, so Ansible never
    # evaluates it as a template. Keys and Ansible's connection variables stay plain.
    all_vars = wrap(group_vars(spec), skip_prefix="ansible_")
    if ssh_common_args:
        all_vars["ansible_ssh_common_args"] = ssh_common_args
    for grp in children.values():
        if "hosts" in grp and not grp["hosts"]:
            grp["hosts"] = None
    return {"all": {"vars": all_vars, "hosts": hosts, "children": children}}


def write(
    spec: dict,
    connections: dict[str, Connection],
    state: Path,
    ssh_common_args: str = "",
    disks: dict[str, list[str]] | None = None,
) -> Path:
    """Write hosts.yml into the lab's state dir; link the user's group_vars beside it."""
    inv = render(spec, connections, ssh_common_args, disks)
    target = state / "hosts.yml"
    tmp = target.with_suffix(".tmp")
    tmp.write_text(
        "# Generated by clusterlab from the lab spec. Do not edit: change lab.yml\n"
        f"# or inventories/{spec['name']}/group_vars/ instead.\n"
        + yaml.safe_dump(inv, sort_keys=False, default_flow_style=False)
    )
    tmp.replace(target)
    link = state / "group_vars"
    user_vars = paths.lab_dir(spec["name"]) / "group_vars"
    if link.is_symlink() or link.exists():
        link.unlink()
    if user_vars.is_dir():
        link.symlink_to(user_vars.resolve())
    return target
