"""The lab spec: one validated description from which every other artifact derives.

`load_spec(path)` returns a normalized dict (defaults filled in, node counts expanded,
addresses and disk devices assigned) or raises `SpecError` carrying every problem found,
each as `<field.path>: <what is wrong> (allowed: ...)`.

The field table `FIELDS` is both the validator's list of known keys and the source of the
spec reference in README.md (a test keeps the two in sync).
"""

from __future__ import annotations

import copy
import difflib
import ipaddress
import posixpath
import re
from collections.abc import Callable
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
    providers: tuple[str, ...] = ()  # the providers the field applies to; () = every one


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
    "nodes[].cpus": Field("int", 2, "vCPUs (vagrant).", providers=("vagrant",)),
    "nodes[].memory": Field("int", 2048, "Memory in MiB (vagrant).", providers=("vagrant",)),
    "nodes[].address": Field(
        "ip", None, "IPv4 address inside network.cidr; default .11, .12, … in node order."
    ),
    "nodes[].disks": Field("list", [], "Data disks of the node."),
    "nodes[].disks[].size": Field(
        "size",
        None,
        "Disk size in binary units: 10G or 10Gi (= 10 GiB), 512M/512Mi, 1T/1Ti (local, vagrant; "
        "optional on static). Decimal units (GB, MB) are refused: ambiguous.",
    ),
    "nodes[].disks[].device": Field(
        "path",
        None,
        "Device path; required on static, assigned otherwise: /dev/vdb, … (vagrant libvirt), "
        "/dev/sdb, … (VirtualBox), on local the loop device attached at `up` (/dev/loopN, the "
        "kernel's own name; null here, a placeholder in the planned inventory).",
    ),
    "nodes[].disks[].ceph": Field("bool", True, "Hand the disk to Ceph as an OSD disk."),
    "nodes[].user": Field(
        "str",
        None,
        "SSH user (static; default: the OS image's user).",
        providers=("static",),
    ),
    "nodes[].port": Field("int", 22, "SSH port (static).", providers=("static",)),
    "nodes[].key_file": Field(
        "path", None, "SSH private key: absolute or ~/ path (static).", providers=("static",)
    ),
    "nodes[].become_method": Field(
        "enum",
        "sudo",
        "How a non-root user becomes root (static).",
        BECOME_METHODS,
        providers=("static",),
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
    "nodes.cpus": Field("int", 2, "Count form: vCPUs per node (vagrant).", providers=("vagrant",)),
    "nodes.memory": Field(
        "int", 2048, "Count form: memory per node in MiB (vagrant).", providers=("vagrant",)
    ),
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
    "rook.version": Field("str", "v1.20.6", "Rook release, like v1.20.6."),
    "rook.mode": Field("enum", "host", "OSDs on raw node disks, or on PVCs.", ROOK_MODES),
    "rook.mon_count": Field("int", None, "Ceph mons (default: 3 with ≥ 3 nodes, else 1)."),
    "rook.allow_multiple_per_node": Field(
        "bool", None, "Several mons per node (default: true below 3 nodes)."
    ),
    "rook.replica_size": Field("int", None, "Pool replica size (default: min(3, OSD hosts))."),
    "rook.device_filter": Field(
        "str", None, "Host mode: Go regex on kernel device names (no spaces or quotes)."
    ),
    "rook.storage_class": Field(
        "str",
        None,
        "PVC mode: existing block StorageClass (a Kubernetes object name); default "
        "local-storage made from data disks.",
    ),
    "rook.data_dir_host_path": Field(
        "path",
        "/var/lib/rook",
        "Rook's dataDirHostPath: a directory of its own (not /, /etc, /var, /var/lib, /home, "
        "…); `reset` removes what Rook made inside it, then the directory if empty.",
    ),
    "artifacts.cache_dir": Field(
        "path",
        None,
        "Download cache on the controller (default: $CLUSTERLAB_CACHE/downloads, "
        "else ~/.cache/clusterlab/downloads).",
    ),
    "artifacts.mirror_url": Field(
        "url", None, "Offline mirror for binaries (files repo): an http:// or https:// URL."
    ),
    "artifacts.image_registry": Field(
        "str", None, "Mirror registry for container images: host[:port][/path]."
    ),
    "artifacts.bundle": Field(
        "path",
        None,
        "Offline bundle (`clusterlab artifacts fetch`) served to the lab from the controller "
        "(relative: to the lab's folder); replaces mirror_url and image_registry.",
    ),
    "vagrant.provider": Field(
        "enum", "libvirt", "Vagrant provider.", VAGRANT_PROVIDERS, providers=("vagrant",)
    ),
    "vagrant.box": Field(
        "str",
        None,
        "Box name instead of the os's default box (e.g. a local box).",
        providers=("vagrant",),
    ),
    "vagrant.libvirt_driver": Field(
        "enum",
        "kvm",
        "libvirt domain type: kvm, or qemu (software emulation, no KVM).",
        ("kvm", "qemu"),
        providers=("vagrant",),
    ),
    "demos": Field("list", [], "Meetup demos the lab carries.", DEMOS),
}

SECTIONS = ("network", "kubernetes", "rook", "artifacts", "vagrant")


# ---------------------------------------------------------------- one grammar per field
# Spec strings reach Ansible inventories, templates, manifests, ssh_config and node commands
# as data. Whatever their field, they never carry template markup or control characters;
# each field then has its own strict grammar (GRAMMARS below), checked before anything is
# created.
UNSAFE_TEXT = re.compile(r"\{\{|\{%|\{#|[\x00-\x1f\x7f\x85\u2028\u2029]")


def unsafe_text(value: str) -> str | None:
    """Why a string cannot be spec data (template markup, a newline, a control character)."""
    m = UNSAFE_TEXT.search(value)
    if not m:
        return None
    found = m.group(0)
    if found.startswith("{"):
        return f"contains template markup {found!r}: values are data, never templates"
    return f"contains a control character {found!r}: newlines and control characters are refused"


# Image references: the distribution reference grammar (distribution/reference's regexp.go):
# domain[:port]/path[:tag][@digest], path components lower case.
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[0-9a-fA-F:]+\])(?::[0-9]+)?"
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
REGISTRY_RE = re.compile(rf"{_DOMAIN}(?:/{_PATH_COMPONENT})*")
IMAGE_REF_RE = re.compile(
    rf"(?:{_DOMAIN}/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*(?::{_TAG})?(?:@{_DIGEST})?"
)
URL_RE = re.compile(rf"https?://{_DOMAIN}(?:/[A-Za-z0-9._~%+,=@:-]*)*", re.IGNORECASE)
PATH_CHARS = re.compile(r"[A-Za-z0-9._+,@=/~-]+")
DEVICE_CHARS = re.compile(r"[A-Za-z0-9._+,:@=/-]+")  # by-path names carry PCI addresses
LAB_NAME_RE = re.compile(r"[a-z][a-z0-9-]{0,23}")
HOSTNAME_RE = re.compile(r"[a-z][a-z0-9-]{0,30}")

# Directories that are never Rook's own: reset removes what Rook makes inside
# rook.data_dir_host_path, so it must be a directory of its own.
SYSTEM_DIRS = frozenset(
    {
        "/",
        "/bin",
        "/boot",
        "/dev",
        "/etc",
        "/home",
        "/lib",
        "/lib32",
        "/lib64",
        "/libx32",
        "/media",
        "/mnt",
        "/opt",
        "/proc",
        "/root",
        "/run",
        "/sbin",
        "/srv",
        "/sys",
        "/tmp",
        "/usr",
        "/usr/bin",
        "/usr/lib",
        "/usr/lib64",
        "/usr/libexec",
        "/usr/local",
        "/usr/local/bin",
        "/usr/sbin",
        "/usr/share",
        "/var",
        "/var/cache",
        "/var/lib",
        "/var/log",
        "/var/tmp",
        "/var/spool",
        "/var/mail",
        "/var/lib/kubelet",
        "/var/lib/containerd",
        "/var/lib/etcd",
        "/var/lib/docker",
        "/etc/kubernetes",
        "/opt/bin",
        "/opt/cni",
        "/var/home",
        "/sysroot",
        "/snap",
    }
)
SYSTEM_TREES = ("/proc/", "/sys/", "/dev/", "/run/", "/boot/", "/etc/", "/usr/")


def _path(
    value: str, *, absolute: bool, home: bool = False, chars: re.Pattern = PATH_CHARS
) -> tuple[str, str | None]:
    """A path of plain characters without '..' components, normalised (no //, ./, trailing /)."""
    if not chars.fullmatch(value):
        return value, "has characters a path here cannot have"
    if ".." in value.split("/"):
        return value, "has a '..' component"
    if "~" in value and not (home and (value == "~" or value.startswith("~/"))):
        return value, "has '~' other than a leading ~/"
    if absolute and not (value.startswith("/") or (home and value.startswith("~"))):
        return value, "is not an absolute path" + (" or ~/…" if home else "")
    norm = posixpath.normpath(value)
    return ("/" + norm.lstrip("/") if norm.startswith("//") else norm), None


def _g_regex(rx: re.Pattern, what: str) -> Callable[[str], tuple[str, str | None]]:
    def check(value: str) -> tuple[str, str | None]:
        return value, None if rx.fullmatch(value) else f"is not {what}"

    return check


def _g_device(value: str) -> tuple[str, str | None]:
    norm, problem = _path(value, absolute=True, chars=DEVICE_CHARS)
    if problem and value.startswith("/dev/"):
        return value, problem
    if problem or not norm.startswith("/dev/"):
        return value, "is not a device path"
    return norm, None


def _g_data_dir(value: str) -> tuple[str, str | None]:
    norm, problem = _path(value, absolute=True)
    if problem:
        return value, problem
    if norm in SYSTEM_DIRS or norm.count("/") < 2 or norm.startswith(SYSTEM_TREES):
        return norm, (
            f"is {norm}, not a directory of Rook's own (reset removes what Rook makes in it)"
        )
    return norm, None


def _g_filter(value: str) -> tuple[str, str | None]:
    if not re.fullmatch(r"[A-Za-z0-9^$.*+?()\[\]{}|\\,_-]{1,128}", value):
        return value, "has characters a device filter cannot have"
    try:
        re.compile(value)
    except re.error as exc:
        return value, f"is not a regular expression: {exc}"
    return value, None


GrammarCheck = Callable[[str], tuple[str, str | None]]

# field path -> (check, allowed). A check returns the normalised value and a problem or None.
GRAMMARS: dict[str, tuple[GrammarCheck, str]] = {
    "name": (_g_regex(LAB_NAME_RE, "a valid lab name"), "a-z, 0-9, '-', ≤ 24 chars"),
    "nodes[].name": (_g_regex(HOSTNAME_RE, "a valid hostname"), "a-z, 0-9, '-'"),
    "nodes.name_prefix": (
        _g_regex(re.compile(r"[a-z][a-z0-9-]{0,20}"), "a valid name prefix"),
        "a-z, 0-9, '-', ≤ 21 chars",
    ),
    "nodes[].user": (
        _g_regex(re.compile(r"[a-z_][a-z0-9_.-]{0,31}"), "a user name"),
        "a-z, 0-9, '_', '.', '-'",
    ),
    "nodes[].key_file": (
        lambda v: _path(v, absolute=True, home=True),
        "/… or ~/… of A-Z a-z 0-9 . _ + , : @ = - /",
    ),
    "nodes[].address": (_g_regex(re.compile(r"[0-9.]{7,15}"), "an IPv4 address"), "a.b.c.d"),
    "nodes[].disks[].device": (_g_device, "/dev/sdb, /dev/disk/by-id/…"),
    "network.cidr": (_g_regex(re.compile(r"[0-9./]{9,18}"), "an IPv4 network"), "a.b.c.d/n"),
    "kubernetes.pod_cidr": (_g_regex(re.compile(r"[0-9./]{9,18}"), "an IPv4 network"), "a.b.c.d/n"),
    "kubernetes.service_cidr": (
        _g_regex(re.compile(r"[0-9./]{9,18}"), "an IPv4 network"),
        "a.b.c.d/n",
    ),
    "kubernetes.version": (
        _g_regex(re.compile(r"v?1\.\d+(?:\.\d+)?"), "a version like 1.35.9 or 1.35"),
        ", ".join(releases.kube_releases()),
    ),
    "rook.version": (
        _g_regex(re.compile(r"v\d+\.\d+\.\d+(?:-[0-9A-Za-z.]+)?"), "a Rook release"),
        "v1.20.6",
    ),
    "rook.device_filter": (_g_filter, "a Go regular expression like ^sd[b-d]$"),
    "rook.storage_class": (
        _g_regex(
            re.compile(r"(?=.{1,253}$)[a-z0-9](?:[-a-z0-9.]*[a-z0-9])?"),
            "a Kubernetes object name",
        ),
        "a-z, 0-9, '-', '.'",
    ),
    "rook.data_dir_host_path": (_g_data_dir, "a dedicated absolute directory like /var/lib/rook"),
    "artifacts.cache_dir": (lambda v: _path(v, absolute=True, home=True), "/… or ~/…"),
    "artifacts.bundle": (lambda v: _path(v, absolute=False, home=True), "a path"),
    "artifacts.mirror_url": (
        _g_regex(URL_RE, "a URL (http:// or https://, no query)"),
        "http://, https://",
    ),
    "artifacts.image_registry": (
        _g_regex(REGISTRY_RE, "a registry host[:port][/path]"),
        "e.g. 10.0.0.1:5000 or mirror.example/k8s",
    ),
    "vagrant.box": (
        _g_regex(
            re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*(?:/[A-Za-z0-9][A-Za-z0-9._-]*)?"),
            "a box name",
        ),
        "name or org/name",
    ),
}


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


SIZE_RE = re.compile(r"^(\d+(?:\.\d+)?)(?:([KMGT])(i?B|i)?)?$")
SIZE_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}
DECIMAL_SIZE_RE = re.compile(r"^\s*\d+(?:\.\d+)?\s*([kKmMgGtT][bB])\s*$")


def size_problem(text: Any) -> str | None:
    """Why a disk size is refused, or None. Sizes are binary: 10G, 10Gi (Kubernetes'
    quantity) and 10GiB all mean 10 GiB; GB/MB are refused (decimal to Kubernetes and disk
    vendors, binary to truncate and Vagrant: which one the writer meant is unknown)."""
    if isinstance(text, bool) or not isinstance(text, str | int):
        return "is not a size"
    if isinstance(text, int):
        return None if text > 0 else "is not a size"
    m = DECIMAL_SIZE_RE.match(text)
    if m:
        unit = m.group(1)
        return (
            f"{unit} is ambiguous (decimal to Kubernetes and disk vendors, binary to truncate "
            f"and Vagrant); write {unit[0].upper()}i or {unit[0].upper()} (binary)"
        )
    if not SIZE_RE.match(text):
        return "is not a size"
    return None


def parse_size(text: Any) -> int:
    """'10G', '10Gi', '10GiB' -> bytes (binary units, as truncate, Vagrant and Kubernetes'
    Gi use). ValueError with the reason if refused (see size_problem)."""
    problem = size_problem(text)
    if problem:
        raise ValueError(problem)
    if isinstance(text, int):
        return text
    m = SIZE_RE.match(text)
    assert m is not None
    return int(float(m.group(1)) * SIZE_UNITS[m.group(2) or ""])


def format_size(n: int) -> str:
    for unit in ("T", "G", "M", "K"):
        if n % SIZE_UNITS[unit] == 0:
            return f"{n // SIZE_UNITS[unit]}{unit}"
    return str(n)


class _Checker:
    def __init__(self) -> None:
        self.problems: list[str] = []
        self.refused: set[str] = set()  # paths whose value failed its grammar

    def bad(self, path: str, what: str, allowed: str | None = None) -> None:
        """One line per problem: a path whose value was refused by its grammar gets no
        follow-up problems, and the same line is never repeated (count-form disks)."""
        if path in self.refused:
            return
        line = f"{path}: {what}"
        if allowed:
            line += f" (allowed: {allowed})"
        if line not in self.problems:
            self.problems.append(line)

    def refuse(self, path: str, what: str, allowed: str | None = None) -> None:
        self.bad(path, what, allowed)
        self.refused.add(path)

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
            problem = unsafe_text(value)
            if problem:
                self.refuse(where, problem)
                return None
            if field_path in GRAMMARS:
                check, allowed = GRAMMARS[field_path]
                value, problem = check(value)
                if problem:
                    self.refuse(where, f"{value!r} {problem}", allowed)
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

    _refuse_unsafe_text(ck, raw, "")
    out: dict[str, Any] = {}
    out["name"] = ck.get(top, "name", "", "name")
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


def _refuse_unsafe_text(ck: _Checker, value: Any, path: str) -> None:
    """Every string anywhere in the raw spec (enums and list items too): template markup,
    newlines and control characters refused at its field path, whatever the field."""
    if isinstance(value, str):
        problem = unsafe_text(value)
        if problem:
            ck.refuse(path or "(top)", problem)
    elif isinstance(value, dict):
        for key, item in value.items():
            _refuse_unsafe_text(ck, item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _refuse_unsafe_text(ck, item, f"{path}[{i}]")


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
                except ValueError as exc:
                    ck.bad(f"{dpath}.size", f"{disk['size']!r} {exc}", "e.g. 10G, 10Gi, 512Mi, 1T")
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
    return rook


def check_lab_name(name: Any, what: str = "name") -> str:
    """The lab name of a command line (init NAME, --lab), before it names any path."""
    if not isinstance(name, str) or unsafe_text(name) or not LAB_NAME_RE.fullmatch(name):
        raise SpecError(
            [f"{what}: {name!r} is not a valid lab name (allowed: a-z, 0-9, '-', ≤ 24 chars)"]
        )
    return name


def for_provider(spec: dict) -> dict:
    """A copy of a normalized spec without the fields that do not apply to its provider
    (FIELDS' providers): what `spec` prints. The stages keep using the full spec."""
    out = copy.deepcopy(spec)
    provider = spec.get("provider")
    for path, field in FIELDS.items():
        if not field.providers or provider in field.providers:
            continue
        if path.startswith("nodes[]."):
            key = path.removeprefix("nodes[].")
            if "." in key or "[" in key:
                continue
            for node in out.get("nodes") or []:
                node.pop(key, None)
        elif "." in path and not path.startswith("nodes."):
            sec, key = path.split(".", 1)
            if isinstance(out.get(sec), dict):
                out[sec].pop(key, None)
                if not out[sec]:
                    del out[sec]
    return out


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
