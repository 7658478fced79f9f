"""The lab spec: one validated description from which every other artifact derives.

`load_spec(path)` returns a normalized dict (defaults filled in, node counts expanded,
addresses and disk devices assigned) or raises `SpecError` carrying every problem found,
each as `<field.path>: <what is wrong> (allowed: ...)`.

The field table `FIELDS` is both the validator's list of known keys and the source of the
spec reference in README.md (a test keeps the two in sync).
"""

from __future__ import annotations

import difflib
import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from clusterlab import paths, releases
from clusterlab.oses import OSES, providers_for

PROVIDERS = ("local", "vagrant", "static")
ROLES = ("control_plane", "etcd", "worker")
CNIS = ("calico", "flannel")
ROOK_MODES = ("host", "pvc")
DEMOS = (  # in the talk's order
    "storage-types",
    "pv-pvc",
    "access-modes",
    "csi",
    "statefulset",
    "redis-ha",
    "rook-modes",
)
VAGRANT_PROVIDERS = ("libvirt", "virtualbox")
BECOME_METHODS = ("sudo", "su", "none")
MIN_CEPH_DISK = 5 * 1024**3
# The NIC every Vagrant VM also has (vagrant-libvirt's management network, VirtualBox NAT).
VAGRANT_MANAGEMENT_NETS = {
    "libvirt": ipaddress.IPv4Network("192.168.121.0/24"),
    "virtualbox": ipaddress.IPv4Network("10.0.2.0/24"),
}
FIRST_HOST_OFFSET = 11  # node addresses start at .11; .1 is the host/bridge side

REQUIRED = object()


@dataclass(frozen=True)
class Field:
    kind: str  # type shown in the reference
    default: Any
    doc: str
    choices: tuple[str, ...] = ()


# path -> Field. `nodes[]` is an explicit node; `nodes.` is the count form; `[]` lists.
FIELDS: dict[str, Field] = {
    "name": Field("str", REQUIRED, "Lab name: a-z, 0-9, '-', at most 24 characters."),
    "provider": Field("enum", "local", "Who creates the nodes.", PROVIDERS),
    "os": Field("enum", "debian12", "Node operating system.", tuple(OSES)),
    "network.cidr": Field(
        "cidr", "10.213.0.0/24", "Private IPv4 network of the lab, a /24 or smaller."
    ),
    "nodes": Field("list|map", REQUIRED, "Explicit node list, or the count form below."),
    "nodes[].name": Field("str", REQUIRED, "Node name (hostname), unique in the lab."),
    "nodes[].roles": Field(
        "list",
        ["worker"],
        "Any of control_plane, etcd, worker. One control plane; etcd runs stacked on it "
        "(kubeadm's local etcd), so a control plane always has etcd and etcd needs control_plane.",
        ROLES,
    ),
    "nodes[].cpus": Field("int", 2, "vCPUs (vagrant)."),
    "nodes[].memory": Field("int", 2048, "Memory in MiB (vagrant)."),
    "nodes[].address": Field(
        "ip", None, "IPv4 address inside network.cidr; default .11, .12, … in node order."
    ),
    "nodes[].disks": Field("list", [], "Data disks of the node."),
    "nodes[].disks[].size": Field("size", None, "Disk size like 10G (local, vagrant)."),
    "nodes[].disks[].device": Field(
        "path",
        None,
        "Device path; required on static, assigned otherwise: /dev/vdb, … (vagrant libvirt), "
        "/dev/sdb, … (VirtualBox), on local the loop device attached at `up` (/dev/loopN, the "
        "kernel's own name; null here, a placeholder in the planned inventory).",
    ),
    "nodes[].disks[].ceph": Field("bool", True, "Hand the disk to Ceph as an OSD disk."),
    "nodes[].user": Field("str", None, "SSH user (static; default: the OS image's user)."),
    "nodes[].port": Field("int", 22, "SSH port (static)."),
    "nodes[].key_file": Field("path", None, "SSH private key (static)."),
    "nodes[].become_method": Field(
        "enum", "sudo", "How a non-root user becomes root (static).", BECOME_METHODS
    ),
    "nodes.count": Field("int", REQUIRED, "Count form: number of nodes."),
    "nodes.control_plane": Field(
        "int", 1, "Count form: control planes (one: no HA API endpoint); the first node."
    ),
    "nodes.etcd": Field(
        "int",
        None,
        "Count form: etcd members; etcd runs stacked on the control planes, so this equals control_plane.",
    ),
    "nodes.name_prefix": Field("str", "node", "Count form: names are <prefix>1, <prefix>2, …"),
    "nodes.cpus": Field("int", 2, "Count form: vCPUs per node."),
    "nodes.memory": Field("int", 2048, "Count form: memory per node in MiB."),
    "nodes.disks": Field("list", [], "Count form: data disks of every node."),
    "kubernetes.version": Field(
        "str",
        releases.default_version(),
        "Kubernetes version: a pinned patch ("
        + ", ".join(releases.kube_releases())
        + "), or a minor like 1.34 for its pinned patch.",
    ),
    "kubernetes.cni": Field("enum", "calico", "Pod network plugin.", CNIS),
    "kubernetes.pod_cidr": Field("cidr", "10.233.64.0/18", "Pod network."),
    "kubernetes.service_cidr": Field("cidr", "10.233.0.0/18", "Service network."),
    "rook.enabled": Field("bool", True, "Deploy Rook/Ceph."),
    "rook.version": Field("str", "v1.20.6", "Rook release."),
    "rook.mode": Field("enum", "host", "OSDs on raw node disks, or on PVCs.", ROOK_MODES),
    "rook.mon_count": Field("int", None, "Ceph mons (default: 3 with ≥ 3 nodes, else 1)."),
    "rook.allow_multiple_per_node": Field(
        "bool", None, "Several mons per node (default: true below 3 nodes)."
    ),
    "rook.replica_size": Field("int", None, "Pool replica size (default: min(3, OSD hosts))."),
    "rook.device_filter": Field("str", None, "Host mode: Go regex on kernel device names."),
    "rook.storage_class": Field(
        "str",
        None,
        "PVC mode: existing block StorageClass; default local-storage made from data disks.",
    ),
    "rook.data_dir_host_path": Field("path", "/var/lib/rook", "Rook's dataDirHostPath."),
    "artifacts.cache_dir": Field(
        "path",
        None,
        "Download cache on the controller (default: $CLUSTERLAB_CACHE/downloads, "
        "else ~/.cache/clusterlab/downloads).",
    ),
    "artifacts.mirror_url": Field("url", None, "Offline mirror for binaries (files repo)."),
    "artifacts.image_registry": Field("str", None, "Mirror registry for container images."),
    "artifacts.bundle": Field(
        "path",
        None,
        "Offline bundle (`clusterlab artifacts fetch`) served to the lab from the controller "
        "(relative: to the lab's folder); replaces mirror_url and image_registry.",
    ),
    "vagrant.provider": Field("enum", "libvirt", "Vagrant provider.", VAGRANT_PROVIDERS),
    "vagrant.box": Field(
        "str", None, "Box name instead of the os's default box (e.g. a local box)."
    ),
    "vagrant.libvirt_driver": Field(
        "enum",
        "kvm",
        "libvirt domain type: kvm, or qemu (software emulation, no KVM).",
        ("kvm", "qemu"),
    ),
    "demos": Field("list", [], "Meetup demos the lab carries.", DEMOS),
}

SECTIONS = ("network", "kubernetes", "rook", "artifacts", "vagrant")


class SpecError(Exception):
    """Every problem of one spec; str() gives one line per problem."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


def _keys_under(prefix: str) -> list[str]:
    """Direct child keys of a field path prefix like 'rook.' or 'nodes[].'."""
    out = []
    for path in FIELDS:
        if path.startswith(prefix):
            rest = path[len(prefix) :]
            head = re.split(r"[.\[]", rest, maxsplit=1)[0]
            if head and head not in out:
                out.append(head)
    return out


SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?\s*$", re.IGNORECASE)
SIZE_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


def parse_size(text: Any) -> int:
    """'10G' -> bytes (binary units, as truncate and Vagrant use). ValueError if unparsable."""
    if isinstance(text, bool) or not isinstance(text, str | int):
        raise ValueError(text)
    m = SIZE_RE.match(str(text))
    if not m:
        raise ValueError(text)
    return int(float(m.group(1)) * SIZE_UNITS[m.group(2).upper()])


def format_size(n: int) -> str:
    for unit in ("T", "G", "M", "K"):
        if n % SIZE_UNITS[unit] == 0:
            return f"{n // SIZE_UNITS[unit]}{unit}"
    return str(n)


class _Checker:
    def __init__(self) -> None:
        self.problems: list[str] = []

    def bad(self, path: str, what: str, allowed: str | None = None) -> None:
        line = f"{path}: {what}"
        if allowed:
            line += f" (allowed: {allowed})"
        self.problems.append(line)

    def mapping(self, value: Any, path: str, schema_prefix: str) -> dict:
        """Check that value is a mapping with only known keys; return it (or {})."""
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.bad(path or "(top)", f"expected a mapping, got {_kind(value)}")
            return {}
        known = _keys_under(schema_prefix)
        for key in value:
            if key not in known:
                where = f"{path}.{key}" if path else str(key)
                close = difflib.get_close_matches(str(key), known, n=1, cutoff=0.6)
                hint = f"; did you mean '{close[0]}'?" if close else ""
                self.bad(where, f"unknown key{hint}", ", ".join(known))
        return value

    def get(self, data: dict, key: str, path: str, field_path: str) -> Any:
        """Typed value of data[key] with the field's default; records type errors."""
        field = FIELDS[field_path]
        where = f"{path}.{key}" if path else key
        if key not in data or data[key] is None:
            if field.default is REQUIRED:
                self.bad(where, "required")
                return None
            default = field.default
            return list(default) if isinstance(default, list) else default
        value = data[key]
        kind = field.kind
        if kind == "int":
            if isinstance(value, bool) or not isinstance(value, int):
                self.bad(where, f"expected an integer, got {_kind(value)} {value!r}")
                return None
        elif kind == "bool":
            if not isinstance(value, bool):
                self.bad(where, f"expected true or false, got {value!r}")
                return None
        elif kind == "enum":
            if value not in field.choices:
                close = difflib.get_close_matches(str(value), field.choices, n=1, cutoff=0.6)
                hint = f"; did you mean '{close[0]}'?" if close else ""
                self.bad(where, f"{value!r} is not supported{hint}", ", ".join(field.choices))
                return None
        elif kind in ("str", "path", "url", "ip", "cidr", "size"):
            if kind == "size" and isinstance(value, int) and not isinstance(value, bool):
                return value
            if not isinstance(value, str):
                self.bad(where, f"expected a string, got {_kind(value)} {value!r}")
                return None
        elif kind == "list" and not isinstance(value, list):
            self.bad(where, f"expected a list, got {_kind(value)}")
            return None
        return value


def _kind(value: Any) -> str:
    return {
        dict: "a mapping",
        list: "a list",
        str: "a string",
        bool: "a boolean",
        int: "an integer",
        float: "a number",
    }.get(type(value), type(value).__name__)


def _cidr(ck: _Checker, value: str | None, path: str) -> ipaddress.IPv4Network | None:
    if value is None:
        return None
    try:
        return ipaddress.IPv4Network(value, strict=True)
    except ValueError as exc:
        ck.bad(path, f"not an IPv4 network: {exc}", "e.g. 10.213.0.0/24")
        return None


def _load_yaml(text: str, source: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "unknown place"
        raise SpecError([f"(yaml): syntax error in {source} at {where}: {exc.problem}"]) from None
    except yaml.YAMLError as exc:
        raise SpecError([f"(yaml): cannot parse {source}: {exc}"]) from None


def load_spec_file(path: str | Path) -> dict:
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise SpecError([f"(file): cannot read {p}: {exc.strerror}"]) from None
    spec = normalize(_load_yaml(text, str(p)))
    bundle = spec["artifacts"]["bundle"]
    if bundle:  # relative to the lab's folder, wherever the command runs
        spec["artifacts"]["bundle"] = str((p.parent / Path(bundle).expanduser()).resolve())
    return spec


def load_spec_text(text: str, source: str = "<text>") -> dict:
    return normalize(_load_yaml(text, source))


def normalize(raw: Any) -> dict:
    """Validate a parsed spec and return it normalized; raise SpecError with every problem."""
    ck = _Checker()
    if raw is None:
        raw = {}
    top = ck.mapping(raw, "", "")
    if ck.problems and not isinstance(raw, dict):
        raise SpecError(ck.problems)

    out: dict[str, Any] = {}
    name = ck.get(top, "name", "", "name")
    if name is not None and not re.fullmatch(r"[a-z][a-z0-9-]{0,23}", name):
        ck.bad("name", f"{name!r} is not a valid lab name", "a-z, 0-9, '-', ≤ 24 chars")
    out["name"] = name
    provider = out["provider"] = ck.get(top, "provider", "", "provider")
    os_name = out["os"] = ck.get(top, "os", "", "os")
    if provider and os_name and provider not in providers_for(os_name):
        ck.bad(
            "os",
            f"{os_name} cannot run on the {provider} provider",
            f"providers for {os_name}: {', '.join(providers_for(os_name))}",
        )

    sections = {s: ck.mapping(top.get(s), s, s + ".") for s in SECTIONS}

    def section(sec: str) -> dict:
        return {
            key: ck.get(sections[sec], key, sec, f"{sec}.{key}") for key in _keys_under(sec + ".")
        }

    network = out["network"] = section("network")
    cidr = _cidr(ck, network["cidr"], "network.cidr")
    if cidr is not None:
        if not cidr.is_private or cidr.is_loopback or cidr.is_link_local:
            ck.bad(
                "network.cidr", f"{cidr} is not a private network", "10/8, 172.16/12, 192.168/16"
            )
        if cidr.prefixlen < 24:
            ck.bad("network.cidr", f"/{cidr.prefixlen} is larger than a /24", "/24 … /28")
        network["gateway"] = str(cidr.network_address + 1)
        network["prefix"] = cidr.prefixlen

    out["vagrant"] = section("vagrant")
    out["nodes"] = _nodes(ck, top.get("nodes"), out, cidr)

    kube = out["kubernetes"] = section("kubernetes")
    version = kube["version"]
    if version is not None:
        m = re.fullmatch(r"v?1\.(\d+)(?:\.(\d+))?", version)
        pinned = ", ".join(releases.kube_releases())
        if not m:
            ck.bad("kubernetes.version", f"{version!r} is not a version like 1.35.9 or 1.35")
        elif m.group(2) is None:
            newest = releases.newest_patch(int(m.group(1)))
            if newest is None:
                ck.bad("kubernetes.version", f"no pinned release of {version}", pinned)
            else:
                kube["version"] = newest
        elif version.lstrip("v") not in releases.kube_releases():
            ck.bad(
                "kubernetes.version",
                f"{version} is not pinned (no checksums for its binaries)",
                pinned,
            )
        else:
            kube["version"] = version.lstrip("v")
    nets = {}
    for key in ("pod_cidr", "service_cidr"):
        nets[key] = _cidr(ck, kube[key], f"kubernetes.{key}")
    if (
        nets["pod_cidr"]
        and nets["service_cidr"]
        and nets["pod_cidr"].overlaps(nets["service_cidr"])
    ):
        ck.bad("kubernetes.service_cidr", "overlaps kubernetes.pod_cidr")
    for key, net in nets.items():
        if net and cidr and net.overlaps(cidr):
            ck.bad(f"kubernetes.{key}", f"overlaps network.cidr {cidr}")
        mgmt = VAGRANT_MANAGEMENT_NETS.get(out["vagrant"]["provider"] or "")
        if net and provider == "vagrant" and mgmt and net.overlaps(mgmt):
            ck.bad(
                f"kubernetes.{key}",
                f"overlaps {mgmt}, the {out['vagrant']['provider']} management network of the VMs",
            )

    out["rook"] = _rook(ck, section("rook"), out["nodes"])
    out["artifacts"] = section("artifacts")
    if out["artifacts"]["cache_dir"] is None:
        out["artifacts"]["cache_dir"] = str(paths.cache_root() / "downloads")
    mirror = out["artifacts"]["mirror_url"]
    if mirror and not re.match(r"^(https?|file)://", mirror):
        ck.bad("artifacts.mirror_url", f"{mirror!r} is not a URL", "http://, https://, file://")
    if out["artifacts"]["bundle"]:
        for other in ("mirror_url", "image_registry"):
            if out["artifacts"][other]:
                ck.bad(
                    "artifacts.bundle",
                    f"set together with artifacts.{other}",
                    "one source: the bundle, or your own mirrors",
                )

    demos = ck.get(top, "demos", "", "demos") or []
    for i, demo in enumerate(demos):
        if demo not in DEMOS:
            ck.bad(f"demos[{i}]", f"{demo!r} is not a known demo", ", ".join(DEMOS))
    out["demos"] = demos

    if ck.problems:
        raise SpecError(ck.problems)
    return out


def disk_device(spec_provider: str, vagrant_provider: str | None, index: int) -> str | None:
    """Device path a provider gives the index-th data disk (0-based); None on local, whose
    disks are loop devices named by the kernel when attached (see inventory.PLANNED_DISK)."""
    if spec_provider == "local":
        return None
    letter = chr(ord("b") + index)
    if spec_provider == "vagrant" and vagrant_provider == "virtualbox":
        return f"/dev/sd{letter}"
    return f"/dev/vd{letter}"


def _expand_counts(ck: _Checker, form: dict) -> list[dict]:
    vals = {k: ck.get(form, k, "nodes", f"nodes.{k}") for k in _keys_under("nodes.")}
    count = vals["count"]
    if count is None:
        return []
    if count < 1:
        ck.bad("nodes.count", f"{count} nodes", "1 or more")
        return []
    cp = vals["control_plane"]
    if cp is not None and not 1 <= cp <= count:
        ck.bad("nodes.control_plane", f"{cp} control planes for {count} nodes", f"1 … {count}")
    etcd = vals["etcd"]
    if etcd is not None and cp is not None and etcd != cp:
        ck.bad(
            "nodes.etcd",
            f"{etcd} etcd members with {cp} control plane(s): etcd runs stacked on the "
            "control planes (kubeadm's local etcd)",
            f"{cp}, or leave it out",
        )
    nodes = []
    for i in range(count):
        roles = []
        if cp is not None and i < cp:
            roles.append("control_plane")
        roles.append("worker")
        nodes.append(
            {
                "name": f"{vals['name_prefix']}{i + 1}",
                "roles": roles,
                "cpus": vals["cpus"],
                "memory": vals["memory"],
                "disks": [dict(d) if isinstance(d, dict) else d for d in vals["disks"] or []],
            }
        )
    return nodes


def _nodes(ck: _Checker, raw: Any, out: dict, cidr: ipaddress.IPv4Network | None) -> list[dict]:
    provider = out["provider"]
    if raw is None:
        ck.bad("nodes", "required: a list of nodes or a mapping with count")
        return []
    if isinstance(raw, dict):
        items = _expand_counts(ck, ck.mapping(raw, "nodes", "nodes."))
        base = "nodes"  # problems in count-form disks point at nodes.disks
    elif isinstance(raw, list):
        items = raw
        base = None
    else:
        ck.bad("nodes", f"expected a list or a mapping, got {_kind(raw)}")
        return []
    if not items and isinstance(raw, list):
        ck.bad("nodes", "empty list", "at least one node")

    nodes: list[dict] = []
    seen_names: dict[str, int] = {}
    seen_addr: dict[str, int] = {}
    for i, item in enumerate(items):
        path = f"nodes[{i}]"
        node_map = ck.mapping(item, path, "nodes[].")
        if not isinstance(item, dict):
            continue
        node = {k: ck.get(node_map, k, path, f"nodes[].{k}") for k in _keys_under("nodes[].")}
        name = node["name"]
        if name is not None:
            if not re.fullmatch(r"[a-z][a-z0-9-]{0,30}", str(name)):
                ck.bad(f"{path}.name", f"{name!r} is not a valid hostname", "a-z, 0-9, '-'")
            if name in seen_names:
                ck.bad(
                    f"{path}.name", f"duplicate node name {name!r} (also nodes[{seen_names[name]}])"
                )
            seen_names.setdefault(name, i)
        roles = node["roles"] or []
        for j, role in enumerate(roles):
            if role not in ROLES:
                ck.bad(f"{path}.roles[{j}]", f"{role!r} is not a role", ", ".join(ROLES))
        if "etcd" in roles and "control_plane" not in roles:
            ck.bad(
                f"{path}.roles",
                "etcd without control_plane: etcd runs stacked on the control plane "
                "(kubeadm's local etcd)",
                "control_plane with etcd, or drop etcd",
            )
        if "control_plane" in roles:
            roles = [*roles, "etcd"]
        node["roles"] = [r for r in ROLES if r in roles]
        for key, low in (("cpus", 1), ("memory", 512), ("port", 1)):
            if node[key] is not None and node[key] < low:
                ck.bad(f"{path}.{key}", f"{node[key]} is too small", f"≥ {low}")
        if node["port"] is not None and node["port"] > 65535:
            ck.bad(f"{path}.port", f"{node['port']} is not a port", "1 … 65535")

        addr = node["address"]
        if addr is None:
            if provider == "static":
                ck.bad(f"{path}.address", "required on the static provider")
            elif cidr is not None:
                host = cidr.network_address + FIRST_HOST_OFFSET + i
                if host >= cidr.broadcast_address:
                    ck.bad("network.cidr", f"too small for {len(items)} nodes", "a /24")
                else:
                    node["address"] = str(host)
        else:
            try:
                ip = ipaddress.IPv4Address(addr)
            except ValueError:
                ck.bad(f"{path}.address", f"{addr!r} is not an IPv4 address")
            else:
                if cidr is not None:
                    if ip not in cidr or ip in (cidr.network_address, cidr.broadcast_address):
                        hint = (
                            "; on static labs network.cidr is the nodes' own network"
                            if provider == "static"
                            else ""
                        )
                        ck.bad(f"{path}.address", f"{ip} is not a host address in {cidr}{hint}")
                    elif ip == cidr.network_address + 1 and provider != "static":
                        ck.bad(
                            f"{path}.address",
                            f"{ip} is the lab's gateway",
                            f"hosts of {cidr} but .1",
                        )
                if addr in seen_addr:
                    ck.bad(f"{path}.address", f"{addr} is also nodes[{seen_addr[addr]}]'s address")
                seen_addr.setdefault(addr, i)

        if provider == "static":
            if node["user"] is None:
                ck.bad(f"{path}.user", "required on the static provider")
        else:
            for key in ("user", "key_file"):
                if node_map.get(key) is not None:
                    ck.bad(f"{path}.{key}", "only for the static provider", "remove it")
            if node["user"] is None and out["os"]:
                node["user"] = "root" if provider == "local" else OSES[out["os"]].user

        disk_path = base or path
        disks = []
        for j, d in enumerate(node["disks"] or []):
            dpath = f"{disk_path}.disks[{j}]"
            dmap = ck.mapping(d, dpath, "nodes[].disks[].")
            if not isinstance(d, dict):
                continue
            disk = {
                k: ck.get(dmap, k, dpath, f"nodes[].disks[].{k}")
                for k in _keys_under("nodes[].disks[].")
            }
            if provider == "static":
                if disk["device"] is None:
                    ck.bad(f"{dpath}.device", "required on the static provider", "/dev/sdb, …")
                elif not disk["device"].startswith("/dev/"):
                    ck.bad(f"{dpath}.device", f"{disk['device']!r} is not a device path", "/dev/…")
            else:
                if disk["device"] is not None:
                    ck.bad(f"{dpath}.device", "assigned by the provider", "only on static")
                disk["device"] = disk_device(provider, out["vagrant"]["provider"], j)
            if disk["size"] is None:
                if provider != "static":
                    ck.bad(f"{dpath}.size", "required", "e.g. 10G")
            else:
                try:
                    size = parse_size(disk["size"])
                except ValueError:
                    ck.bad(f"{dpath}.size", f"{disk['size']!r} is not a size", "e.g. 10G, 512M, 1T")
                else:
                    if disk["ceph"] and size < MIN_CEPH_DISK:
                        ck.bad(
                            f"{dpath}.size", f"{disk['size']} is too small for a Ceph disk", "≥ 5G"
                        )
                    disk["size"] = format_size(size)
                    disk["size_bytes"] = size
            disks.append(disk)
        node["disks"] = disks
        nodes.append(node)

    if nodes:
        if not any("control_plane" in n["roles"] for n in nodes):
            ck.bad("nodes", "no node has the control_plane role", "at least one")
        cps = [n["name"] for n in nodes if "control_plane" in n["roles"]]
        if len(cps) > 1:
            ck.bad(
                "nodes",
                f"{len(cps)} control planes ({', '.join(map(str, cps))}): clusterlab builds one "
                "control plane with stacked etcd (no HA API endpoint)",
                "control_plane on one node",
            )
        if not any("worker" in n["roles"] for n in nodes):
            ck.bad("nodes", "no node has the worker role", "at least one")
    return nodes


def _rook(ck: _Checker, rook: dict, nodes: list[dict]) -> dict:
    if not rook["enabled"]:
        return rook
    osd_hosts = [n for n in nodes if any(d["ceph"] for d in n["disks"])]
    n_nodes = len(nodes)
    if rook["mode"] == "host" and nodes and not osd_hosts:
        ck.bad("rook.mode", "host mode needs at least one node with a Ceph data disk", "pvc")
    if rook["mode"] == "pvc" and nodes and not osd_hosts and not rook["storage_class"]:
        ck.bad(
            "rook.storage_class",
            "pvc mode needs data disks on nodes or a named block StorageClass",
        )
    if rook["allow_multiple_per_node"] is None:
        rook["allow_multiple_per_node"] = n_nodes < 3
    if rook["mon_count"] is None:
        rook["mon_count"] = 3 if n_nodes >= 3 else 1
    mons = rook["mon_count"]
    if mons is not None:
        if mons < 1 or mons > 9 or mons % 2 == 0:
            ck.bad("rook.mon_count", f"{mons} mons", "1, 3, 5, 7, 9")
        elif mons > n_nodes and not rook["allow_multiple_per_node"] and nodes:
            ck.bad(
                "rook.mon_count",
                f"{mons} mons on {n_nodes} nodes needs rook.allow_multiple_per_node: true",
                f"≤ {n_nodes}",
            )
    hosts = len(osd_hosts) if (osd_hosts or not rook["storage_class"]) else n_nodes
    if rook["replica_size"] is None:
        rook["replica_size"] = max(1, min(3, hosts))
    size = rook["replica_size"]
    if size is not None:
        if size < 1:
            ck.bad("rook.replica_size", f"{size}", "1, 2, 3")
        elif nodes and size > max(hosts, 1):
            ck.bad("rook.replica_size", f"{size} replicas on {hosts} OSD hosts", f"≤ {hosts}")
    if rook["device_filter"]:
        try:
            re.compile(rook["device_filter"])
        except re.error as exc:
            ck.bad("rook.device_filter", f"not a regular expression: {exc}")
    return rook


def reference_markdown() -> str:
    """The spec reference table for README.md."""
    rows = ["| field | type | default | meaning |", "|---|---|---|---|"]
    for path, f in FIELDS.items():
        if f.default is REQUIRED:
            default = "required"
        elif f.default is None:
            default = "derived" if "default" in f.doc else "—"
        else:
            default = f"`{f.default}`" if f.default != [] else "`[]`"
        kind = f.kind + (f" ({', '.join(f.choices)})" if f.choices else "")
        rows.append(f"| `{path}` | {kind} | {default} | {f.doc} |")
    return "\n".join(rows)
