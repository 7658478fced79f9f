"""The local provider: lab nodes as systemd-nspawn machines on this host.

Each node: an overlayfs over the cached base rootfs, its own network namespace on the lab's
bridge, its own cgroup directory in every hierarchy (so every process of a node can be found
and stopped), loop-backed raw data disks bound in under the kernel's own name.

Nodes share the host's sysfs, so lsblk and ceph-volume in a node know a disk only by its
kernel name (loopN): a disk is bound in as /dev/loopN, its path on the host, never renamed.
The loop device stays attached while the lab exists (nodes stopping and starting, `up` run
again keep it); re-attached after a host reboot, it asks for its recorded number again, and
where another device took it meanwhile it gets a new one and the inventory says so.

Everything is discovered from the system by name (bridge, nft table, cgroup dirs, mounts and
loop devices under the lab's state dir), so `destroy` works from any partial state, even
when the state dir is gone.

Nodes share the host's kernel, so they get what kind gives its nodes: the kernel-wide sysctls
the kubelet insists on, set on the host before nodes start and restored by the last lab's
`down`; the host's /dev/kmsg (read-only); / as a shared mount (mount propagation for CSI);
a product_uuid of their own.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from clusterlab import inventory, procs, registry, serve, sshconf, ui
from clusterlab.inventory import Connection
from clusterlab.oses import OSES, providers_for
from clusterlab.providers.base import NodeStatus, Provider, ProviderError
from clusterlab.providers.rootfs import ensure_rootfs

CGROUP_ROOT = Path("/sys/fs/cgroup")
RUN_DIR = Path("/run/clusterlab")
SSH_READY_TIMEOUT = 60.0
STOP_TIMEOUT = 8.0

# Host-wide sysctls while any local lab runs: forwarding for the nodes' NAT, and the kernel
# tunables the kubelet insists on. A kubelet finding other values writes them itself, which
# fails where /proc/sys is read-only (in a node), and it exits: they must hold already.
HOST_SYSCTLS = {
    "net.ipv4.ip_forward": "1",
    "vm.overcommit_memory": "1",
    "vm.panic_on_oom": "0",
    "kernel.panic": "10",
    "kernel.panic_on_oops": "1",
    "kernel.keys.root_maxkeys": "1000000",
    "kernel.keys.root_maxbytes": "25000000",
}
# One file per sysctl holding the host's value from before the first lab.
SYSCTL_ORIG_DIR = RUN_DIR / "sysctl.orig"

# Files the provider writes into every node's root (its overlay upper dir).
NODE_UUID_FILE = "etc/clusterlab/product_uuid"
# Written after the rest of a node's identity (host key, authorized_keys, network, resolv.conf).
IDENTITY_DONE = "etc/clusterlab/identity.done"
NODE_PROFILE_SCRIPT = "usr/local/sbin/clusterlab-node-profile"
NODE_PROFILE_UNIT = "etc/systemd/system/clusterlab-node-profile.service"
NODE_PROFILE_SCRIPT_TEXT = """#!/bin/sh
# Written by clusterlab's local provider; runs at every boot of the node, before containerd.
set -e
# Mount propagation (CSI drivers, the kubelet): systemd shares / only outside containers.
mount --make-rshared /
# A product_uuid of the node's own: over the host's, or in a /sys/class overlay where the
# host has no DMI data at all.
own=/etc/clusterlab/product_uuid
dmi=/sys/class/dmi/id/product_uuid
if [ -e "$dmi" ]; then
    [ "$(cat "$dmi")" = "$(cat "$own")" ] || mount --bind -o ro "$own" "$dmi"
else
    layer=/run/clusterlab/sysclass
    mkdir -p "$layer/dmi/id"
    cp "$own" "$layer/dmi/id/product_uuid"
    chmod 0400 "$layer/dmi/id/product_uuid"
    mount -t overlay clusterlab-dmi -o "ro,lowerdir=$layer:/sys/class" /sys/class
fi
"""
NODE_PROFILE_UNIT_TEXT = f"""# Written by clusterlab's local provider.
[Unit]
Description=clusterlab: shared / and an own product_uuid for a node on a shared kernel
DefaultDependencies=no
After=local-fs.target
Before=sysinit.target containerd.service

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/{NODE_PROFILE_SCRIPT}

[Install]
WantedBy=sysinit.target
"""


def run(cmd: list[str], check: bool = True, **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, **kw)
    if check and proc.returncode != 0:
        raise ProviderError(f"{' '.join(cmd)} failed: {(proc.stderr or proc.stdout).strip()}")
    return proc


def cgroup_hierarchies() -> list[Path]:
    """Every mounted cgroup hierarchy (v1 controllers, name=systemd, unified)."""
    out = []
    if (CGROUP_ROOT / "cgroup.procs").exists():  # pure cgroup v2
        return [CGROUP_ROOT]
    for d in sorted(CGROUP_ROOT.iterdir()):
        if (d / "cgroup.procs").exists() and not d.is_symlink():
            out.append(d)
    return out


_pid_alive, _cmdline = procs.alive, procs.cmdline


def _sysctl_file(key: str) -> Path:
    return Path("/proc/sys") / key.replace(".", "/")


def host_sysctl_values() -> dict[str, str]:
    """The host's current values of HOST_SYSCTLS."""
    return {k: _sysctl_file(k).read_text().strip() for k in HOST_SYSCTLS}


@contextlib.contextmanager
def host_lock() -> Iterator[None]:
    """Serializes what labs share on the host: bridges appearing or going, host sysctls."""
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    with (RUN_DIR / "host.lock").open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def set_host_sysctls() -> None:
    """Record each host value once (before the first lab), then set HOST_SYSCTLS."""
    SYSCTL_ORIG_DIR.mkdir(parents=True, exist_ok=True)
    legacy = RUN_DIR / "ip_forward.orig"  # what earlier versions recorded
    if legacy.exists():
        if (SYSCTL_ORIG_DIR / "net.ipv4.ip_forward").exists():
            legacy.unlink()
        else:
            legacy.replace(SYSCTL_ORIG_DIR / "net.ipv4.ip_forward")
    for key, want in HOST_SYSCTLS.items():
        live = _sysctl_file(key)
        orig = SYSCTL_ORIG_DIR / key
        if not orig.exists():
            tmp = SYSCTL_ORIG_DIR / f".{key}.tmp"
            tmp.write_text(live.read_text())
            tmp.replace(orig)
        if live.read_text().strip() != want:
            try:
                live.write_text(want + "\n")
            except OSError as exc:
                raise ProviderError(
                    f"cannot set {key}={want} on the host ({exc}); local nodes share the "
                    "host's kernel and the kubelet needs it"
                ) from None


# Kernel modules nodes need and cannot load themselves (they share the host's kernel): the
# bridge netfilter sysctls node_prep sets (net.bridge.bridge-nf-call-*) exist only with
# br_netfilter loaded; containerd's overlayfs snapshotter needs overlay.
HOST_MODULES = ("br_netfilter", "overlay")
# Ceph's kernel clients: nodes use them where the host has them, else Rook falls back.
STORAGE_MODULES = ("rbd", "ceph")
# One file per module a lab loaded (not loaded before the first lab): unloaded by the last.
MODULES_LOADED_DIR = RUN_DIR / "modules.loaded"


def _module_present(name: str) -> bool:
    """Whether the kernel has what module `name` gives, loaded or built in (a built-in module
    without parameters has no /sys/module entry): what nodes see."""
    filesystems = Path("/proc/filesystems").read_text().split()
    probe = {
        "br_netfilter": Path("/proc/sys/net/bridge/bridge-nf-call-iptables").exists(),
        "overlay": "overlay" in filesystems,
        "rbd": Path("/sys/bus/rbd").exists(),
        "ceph": "ceph" in filesystems,
    }
    return probe.get(name, False) or Path(f"/sys/module/{name}").exists()


def hostkernel_modules() -> list[str]:
    """Load HOST_MODULES on the host (recording the ones loaded now); try STORAGE_MODULES and
    return those that could not be loaded. Call under host_lock()."""
    unavailable = []
    for mod in (*HOST_MODULES, *STORAGE_MODULES):
        if _module_present(mod):
            continue
        modprobe = shutil.which("modprobe") or shutil.which("modprobe", path="/usr/sbin:/sbin")
        res = (
            run([modprobe, mod], check=False)
            if modprobe
            else subprocess.CompletedProcess([], 1, "", "modprobe not found (package kmod)")
        )
        if res.returncode == 0 and _module_present(mod):
            MODULES_LOADED_DIR.mkdir(parents=True, exist_ok=True)
            (MODULES_LOADED_DIR / mod).write_text("")
            continue
        why = (res.stderr or res.stdout).strip().splitlines()
        if mod in HOST_MODULES:
            raise ProviderError(
                f"cannot load kernel module {mod} on the host ({why[-1] if why else 'modprobe failed'}); "
                "local nodes share the host's kernel and need it"
            )
        unavailable.append(mod)
    if unavailable:
        ui.info(
            f"    host kernel modules {', '.join(unavailable)} could not be loaded: "
            "nodes use Ceph's userspace clients instead (rbd-nbd, ceph-fuse) where Rook can"
        )
    return unavailable


# Capabilities nodes need from the host (--capability): CAP_SYSLOG, beyond systemd-nspawn's
# default set, for reading /dev/kmsg (kernel.dmesg_restrict); CAP_SYS_RESOURCE, in that set
# (systemd-nspawn(1)) but only where the host has it, for lowering an oom_score_adj —
# containerd's CRI gives every pod sandbox -998 (defaultSandboxOOMAdj, kubernetes#47938) and
# runc fails to start it without; the kubelet sets its own to -999. A host that is itself a
# container may lack either (capabilities_not_grantable). Bit numbers: linux/capability.h.
NODE_CAPABILITIES = {"CAP_SYS_RESOURCE": 24, "CAP_SYSLOG": 34}


def capabilities_not_grantable(status: str | None = None) -> list[str]:
    """NODE_CAPABILITIES this host cannot give its nodes: those outside its own bounding set
    (clusterlab itself runs in a container). nspawn drops them without a word."""
    text = Path("/proc/self/status").read_text() if status is None else status
    bounding = int(next(ln.split()[1] for ln in text.splitlines() if ln.startswith("CapBnd:")), 16)
    return [name for name, bit in NODE_CAPABILITIES.items() if not bounding >> bit & 1]


def pods_can_run() -> bool:
    """Whether runc in this host's local nodes can start a pod sandbox (NO_PODS)."""
    return "CAP_SYS_RESOURCE" not in capabilities_not_grantable()


NO_PODS = (
    "this host cannot give its local nodes CAP_SYS_RESOURCE (it is not in the host's capability "
    "bounding set: clusterlab runs inside a container?); runc in the nodes cannot start a pod "
    "sandbox (containerd gives each oom_score_adj -998), so the kubernetes stage cannot run pods "
    "there. Run local labs on a host (or VM) with full capabilities, or use the vagrant or static "
    "provider"
)


def restore_host_modules() -> None:
    """Unload the modules a lab loaded (none the host had before); those still in use stay."""
    if not MODULES_LOADED_DIR.exists():
        return
    modprobe = shutil.which("modprobe") or shutil.which("modprobe", path="/usr/sbin:/sbin")
    for rec in sorted(MODULES_LOADED_DIR.iterdir()):
        if modprobe and run([modprobe, "-r", rec.name], check=False).returncode == 0:
            rec.unlink()
    with contextlib.suppress(OSError):
        MODULES_LOADED_DIR.rmdir()


def restore_host_sysctls() -> None:
    """Put back the recorded host values, unless a local lab still runs (its bridge exists)."""
    if any(Path("/sys/class/net").glob("cl-*")):
        return
    restore_host_modules()
    if not SYSCTL_ORIG_DIR.exists():
        return
    failed = []
    for orig in sorted(SYSCTL_ORIG_DIR.iterdir()):
        if orig.name.startswith("."):  # a recording interrupted before it was complete
            orig.unlink()
            continue
        try:
            _sysctl_file(orig.name).write_text(orig.read_text())
        except OSError as exc:
            failed.append(f"{orig.name}: {exc}")
            continue
        orig.unlink()
    if failed:
        raise ProviderError(
            f"cannot restore host sysctls ({'; '.join(failed)}); originals kept in {SYSCTL_ORIG_DIR}"
        )
    SYSCTL_ORIG_DIR.rmdir()


def _write_if_changed(path: Path, text: str, mode: int = 0o644) -> None:
    if not path.exists() or path.read_text() != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    path.chmod(mode)


def _walk_dirs(top: Path) -> list[Path]:
    """top and every directory below it, parents first; tolerant of dirs vanishing meanwhile."""
    return [Path(d) for d, _, _ in os.walk(top)]


RESOLVED_UPSTREAMS = Path("/run/systemd/resolve/resolv.conf")


def nameserver_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.split()[:1] == ["nameserver"]]


def node_nameservers(
    host_resolv: Path = Path("/etc/resolv.conf"),
    upstreams: Path = RESOLVED_UPSTREAMS,
    fallback: str = "",
) -> list[str]:
    """Nameserver lines a node can use: the host's, unless they are loopback addresses (a
    stub resolver such as systemd-resolved's 127.0.0.53, which no node reaches): then the
    stub's own upstream servers. A host with none of those (offline) gives its nodes
    `fallback` (the lab's gateway): a resolv.conf with a nameserver line, as CoreDNS and the
    kubelet want one, even where it does not answer."""
    try:
        lines = nameserver_lines(host_resolv.read_text())
    except OSError:
        lines = []
    usable = [ln for ln in lines if not _is_loopback(ln.split()[1])]
    if usable:
        return usable
    if upstreams.is_file():
        found = [
            ln for ln in nameserver_lines(upstreams.read_text()) if not _is_loopback(ln.split()[1])
        ]
        if found:
            return found
    if not fallback:
        raise ProviderError(
            f"the host's nameservers ({', '.join(ln.split()[1] for ln in lines) or 'none'}) are "
            f"loopback addresses no node can reach, and no upstream servers were found in {upstreams}"
        )
    ui.info(
        f"    no nameserver nodes can reach on this host ({', '.join(ln.split()[1] for ln in lines) or 'none'}): "
        f"nodes get nameserver {fallback} (names outside the lab do not resolve while offline)"
    )
    return [f"nameserver {fallback}"]


def _is_loopback(addr: str) -> bool:
    try:
        return ipaddress.ip_address(addr).is_loopback
    except ValueError:
        return False


class LocalProvider(Provider):
    name = "local"

    def __init__(self, spec: dict):
        super().__init__(spec)
        self._names: dict[str, str] | None = None
        self.cidr = ipaddress.IPv4Network(spec["network"]["cidr"])
        self.gateway = spec["network"]["gateway"]
        self.suite = OSES[spec["os"]].suite

    # ---------------------------------------------------------------- names
    @property
    def names(self) -> dict[str, str]:
        """Machine-wide names of this lab's objects: those recorded for it on the machine
        (slot-named), else, for a state dir here that no record names, an earlier version's
        names; for a lab neither recorded nor here, names that match nothing."""
        if self._names is None:
            e = registry.entry(self.lab)
            if e and Path(e["state_dir"]) == self.state and e.get("names"):
                self._names = dict(e["names"])
            elif not e and self.state.exists():
                self._names = registry.legacy_names(self.lab)
            else:
                return {"bridge": "", "table": "", "cgroup": "", "machine": ""}
        return self._names

    @property
    def bridge(self) -> str:
        return self.names["bridge"]

    @property
    def table(self) -> str:
        return self.names["table"]

    def cgroup_name(self, node: str) -> str:
        return f"{self.names['cgroup']}.{node}"

    # ---------------------------------------------------------------- helpers
    def node_dir(self, node: str) -> Path:
        return self.state / "nodes" / node

    def machine(self, node: str) -> str:
        return f"{self.names['machine']}-{node}"

    def disk_file(self, node: str, index: int) -> Path:
        """Backing file of the node's index-th data disk (0-based, spec order)."""
        return self.node_dir(node) / "disks" / f"disk{index + 1}.img"

    def lock(self) -> contextlib.AbstractContextManager[None]:
        return registry.lab_lock(self.lab)

    def claim(self) -> dict:
        """Claim the lab's name on the machine (see registry.claim); a lab an earlier version
        brought up from this directory keeps the names its objects have."""
        legacy = registry.legacy_names(self.lab)
        adopt = self.state.exists() and Path(f"/sys/class/net/{legacy['bridge']}").exists()
        e = registry.claim(self.spec, self.state, legacy if adopt else None)
        self._names = dict(e["names"])
        return e

    def check_user(self) -> None:
        if os.geteuid() != 0:
            raise ProviderError(
                "the local provider needs root (it creates bridges, loop devices, mounts and "
                "nspawn machines); run as root, or use the vagrant or static provider"
            )

    def check_host(self) -> None:
        self.check_user()
        if OSES[self.spec["os"]].family != "debian" or not self.suite:
            raise ProviderError(
                f"the local provider runs only Debian-family nodes; {self.spec['os']} runs on: "
                + ", ".join(p for p in providers_for(self.spec["os"]) if p != "local")
            )
        missing = [
            (t, pkg)
            for t, pkg in (
                ("systemd-nspawn", "systemd-container"),
                ("debootstrap", "debootstrap"),
                ("nft", "nftables"),
            )
            if not shutil.which(t)
        ]
        if missing:
            pkgs = " ".join(sorted({p for _, p in missing}))
            raise ProviderError(
                f"{', '.join(t for t, _ in missing)} not found; install with: apt-get install -y {pkgs}"
            )

    def check_network(self) -> None:
        """Refuse a lab cidr that overlaps a route or address that is not this lab's."""
        for obj in json.loads(
            run(["ip", "-j", "-4", "route", "show", "table", "all"]).stdout or "[]"
        ):
            dst = obj.get("dst", "")
            if (
                dst in ("default", "")
                or obj.get("dev") == self.bridge
                or obj.get("type") in ("local", "broadcast")
            ):
                continue
            with contextlib.suppress(ValueError):
                net = ipaddress.IPv4Network(dst, strict=False)
                if net.overlaps(self.cidr):
                    raise ProviderError(
                        f"network.cidr {self.cidr} overlaps the route {dst} on {obj.get('dev')}; "
                        "choose another private /24 in lab.yml"
                    )
        for link in json.loads(run(["ip", "-j", "-4", "addr"]).stdout or "[]"):
            if link.get("ifname") == self.bridge:
                continue
            for a in link.get("addr_info", []):
                net = ipaddress.IPv4Network(f"{a['local']}/{a['prefixlen']}", strict=False)
                if net.overlaps(self.cidr):
                    raise ProviderError(
                        f"network.cidr {self.cidr} overlaps {a['local']}/{a['prefixlen']} on "
                        f"{link['ifname']}; choose another private /24 in lab.yml"
                    )

    def check_disk_space(self) -> None:
        need = 0
        for node in self.spec["nodes"]:
            for i, d in enumerate(node["disks"]):
                if not self.disk_file(node["name"], i).exists():
                    need += d["size_bytes"]
        if not need:
            return
        probe = self.state if self.state.exists() else self.state.parent
        while not probe.exists():
            probe = probe.parent
        st = os.statvfs(probe)
        free = st.f_bavail * st.f_frsize
        if free < need:
            raise ProviderError(
                f"not enough disk space for the data disks: they need {need / 2**30:.1f} GiB, "
                f"{probe} has {free / 2**30:.1f} GiB free; make the disks smaller or free space"
            )

    # ---------------------------------------------------------------- create
    def create(self) -> dict[str, Connection]:
        self.check_host()
        with self.lock():
            self.check_disk_space()
            self.claim()
            rootfs = ensure_rootfs(self.suite)
            self.state.mkdir(parents=True, exist_ok=True)
            (self.state / "nodes").mkdir(exist_ok=True)
            key = sshconf.ensure_keypair(self.state)
            with host_lock():  # the network is checked and taken in one step, on every run
                self.check_network()
                self._ensure_bridge()
                set_host_sysctls()
                hostkernel_modules()
            if not pods_can_run():
                ui.info(f"    warning: {NO_PODS}")
            self._ensure_nat()
            self._accept_docker_forwarding()
            host_keys: dict[str, tuple[list[str], str]] = {}
            started = []
            for node in self.spec["nodes"]:
                host_keys[node["name"]] = (
                    [node["name"], node["address"]],
                    self._ensure_node_fs(node, rootfs, key),
                )
            disks = self._attach_disks()
            for node in self.spec["nodes"]:
                if self._ensure_running(node, disks[node["name"]]):
                    started.append(node["name"])
            sshconf.write_known_hosts(self.state, host_keys)
            hosts = [sshconf.SshHost(n["name"], n["address"], "root") for n in self.spec["nodes"]]
            sshconf.write_ssh_config(self.state, hosts, key)
            self._wait_ssh(started)
            for name in started:
                self._cgroups_writable(name)
            conns = self.planned_connections()
            inventory.write(self.spec, conns, self.state, sshconf.common_args(self.state), disks)
            return conns

    def planned_connections(self) -> dict[str, Connection]:
        return {n["name"]: Connection(host=n["address"], user="root") for n in self.spec["nodes"]}

    def _bridge_exists(self) -> bool:
        return bool(self.bridge) and Path(f"/sys/class/net/{self.bridge}").exists()

    def _ensure_bridge(self) -> None:
        if not self._bridge_exists():
            run(["ip", "link", "add", "name", self.bridge, "type", "bridge"])
        addr = f"{self.gateway}/{self.cidr.prefixlen}"
        have = run(["ip", "-j", "-4", "addr", "show", "dev", self.bridge]).stdout
        if addr.split("/", maxsplit=1)[0] not in have:
            run(["ip", "addr", "add", addr, "dev", self.bridge])
        run(["ip", "link", "set", self.bridge, "up"])

    def nft_rules(self) -> str:
        """The lab's own table: masquerade of its /24 towards the uplink, and forwarding scoped
        to the lab: between its nodes (bridged, seen here with br_netfilter), from its nodes
        out, and back for connections they opened; anything else to or from its bridge is
        dropped, so no other network of the host is routed into the lab."""
        br, net = self.bridge, self.cidr
        return (
            f"table ip {self.table} {{\n"
            "  chain postrouting {\n"
            "    type nat hook postrouting priority srcnat; policy accept;\n"
            f'    ip saddr {net} ip daddr != {net} oifname != "{br}" masquerade\n'
            "  }\n"
            "  chain forward {\n"
            "    type filter hook forward priority filter; policy accept;\n"
            f'    iifname "{br}" oifname "{br}" accept\n'
            f'    iifname "{br}" ip saddr {net} oifname != "cl-*" accept\n'
            f'    oifname "{br}" ip daddr {net} ct state established,related accept\n'
            f'    iifname "{br}" drop\n'
            f'    oifname "{br}" drop\n'
            "  }\n"
            "}\n"
        )

    def _ensure_nat(self) -> None:
        """The lab's nft table (nft_rules), made anew when it differs from the one in place.

        Forwarding itself is one of HOST_SYSCTLS."""
        have = run(["nft", "list", "table", "ip", self.table], check=False)
        if have.returncode == 0:
            if "chain forward" in have.stdout:
                return
            run(["nft", "delete", "table", "ip", self.table])
        run(["nft", "-f", "-"], input=self.nft_rules())

    def _accept_docker_forwarding(self, remove: bool = False) -> None:
        """Where Docker runs, its FORWARD policy is DROP and bridged node traffic (through
        br_netfilter) would die there, whatever the lab's table accepts: accept the lab's
        bridge in DOCKER-USER, the chain Docker leaves to the user (docs.docker.com, "Packet
        filtering and firewalls"); `down` removes exactly these rules."""
        iptables = shutil.which("iptables")
        if not iptables or not self.bridge:
            return
        if run([iptables, "-w", "-n", "-L", "DOCKER-USER"], check=False).returncode != 0:
            return
        tag = f"clusterlab {self.bridge}"
        for direction in ("-i", "-o"):
            rule = [direction, self.bridge, "-m", "comment", "--comment", tag, "-j", "ACCEPT"]
            present = run([iptables, "-w", "-C", "DOCKER-USER", *rule], check=False).returncode == 0
            if remove:
                while present:
                    run([iptables, "-w", "-D", "DOCKER-USER", *rule])
                    present = (
                        run([iptables, "-w", "-C", "DOCKER-USER", *rule], check=False).returncode
                        == 0
                    )
            elif not present:
                run([iptables, "-w", "-I", "DOCKER-USER", *rule])

    def _ensure_node_fs(self, node: dict, rootfs: Path, key: Path) -> str:
        """Overlay mounted, identity written, disks attached; returns the node's host key."""
        nd = self.node_dir(node["name"])
        upper, work, merged = nd / "upper", nd / "work", nd / "root"
        for d in (upper, work, merged, nd / "containerd", nd / "disks"):
            d.mkdir(parents=True, exist_ok=True)
        if not os.path.ismount(merged):
            run(
                [
                    "mount",
                    "-t",
                    "overlay",
                    "overlay",
                    "-o",
                    f"lowerdir={rootfs},upperdir={upper},workdir={work}",
                    str(merged),
                ]
            )
        done = merged / IDENTITY_DONE
        if not done.exists():  # written last: a node interrupted before it gets all of it anew
            self._write_identity(node, merged, key)
            done.parent.mkdir(parents=True, exist_ok=True)
            done.write_text(node["name"] + "\n")
        self._write_profile(merged)
        for i, d in enumerate(node["disks"]):
            f = self.disk_file(node["name"], i)
            if not f.exists():
                with f.open("wb") as fh:
                    fh.truncate(d["size_bytes"])
        return (merged / "etc/ssh/ssh_host_ed25519_key.pub").read_text().strip()

    def _write_identity(self, node: dict, root: Path, key: Path) -> None:
        name = node["name"]
        (root / "etc/hostname").write_text(name + "\n")
        (root / "etc/hosts").write_text(
            f"127.0.0.1 localhost\n127.0.1.1 {name}\n::1 localhost ip6-localhost ip6-loopback\n"
        )
        (root / "etc/machine-id").write_text(uuid.uuid4().hex + "\n")
        hk = root / "etc/ssh/ssh_host_ed25519_key"
        for f in (hk, hk.with_suffix(".pub")):
            f.unlink(missing_ok=True)
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"root@{name}", "-f", str(hk)])
        (root / "etc/ssh/sshd_config.d/10-hostkey.conf").write_text(
            "HostKey /etc/ssh/ssh_host_ed25519_key\n"
        )
        ssh_dir = root / "root/.ssh"
        ssh_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        (ssh_dir / "authorized_keys").write_text(key.with_suffix(".pub").read_text())
        (ssh_dir / "authorized_keys").chmod(0o600)
        net = root / "etc/systemd/network"
        net.mkdir(parents=True, exist_ok=True)
        (net / "10-host0.network").write_text(
            "[Match]\nName=host0\n\n[Network]\n"
            f"Address={node['address']}/{self.cidr.prefixlen}\nGateway={self.gateway}\n"
            "LinkLocalAddressing=no\nIPv6AcceptRA=no\n"
        )
        resolv = root / "etc/resolv.conf"
        if resolv.is_symlink():
            resolv.unlink()
        host_ns = node_nameservers(fallback=self.gateway)
        resolv.write_text("\n".join(host_ns) + "\n")

    @staticmethod
    def _write_profile(root: Path) -> None:
        """What a node on a shared kernel needs at every boot (see NODE_PROFILE_SCRIPT_TEXT)."""
        own_uuid = root / NODE_UUID_FILE
        if not own_uuid.exists():
            own_uuid.parent.mkdir(parents=True, exist_ok=True)
            own_uuid.write_text(str(uuid.uuid4()) + "\n")
        _write_if_changed(root / NODE_PROFILE_SCRIPT, NODE_PROFILE_SCRIPT_TEXT, 0o755)
        _write_if_changed(root / NODE_PROFILE_UNIT, NODE_PROFILE_UNIT_TEXT)
        wants = root / "etc/systemd/system/sysinit.target.wants" / Path(NODE_PROFILE_UNIT).name
        if not wants.is_symlink():
            wants.parent.mkdir(parents=True, exist_ok=True)
            wants.symlink_to(f"../{Path(NODE_PROFILE_UNIT).name}")

    @staticmethod
    def attached_loop(f: Path) -> str | None:
        """The loop device backed by f, or None."""
        have = run(["losetup", "-j", str(f), "-O", "NAME", "-n"]).stdout.split()
        return have[0] if have else None

    def _loop_for(self, f: Path, reuse_only: bool = False) -> str | None:
        """The loop device of disk file f, attached if need be: under the number it had before
        (recorded beside the file) when that is free, else (unless reuse_only) the first free
        one."""
        have = self.attached_loop(f)
        record = f.with_suffix(".loop")
        if not have:
            before = record.read_text().strip() if record.exists() else ""
            if before and not self._loop_busy(before):
                have = run(["losetup", "--show", before, str(f)], check=False).stdout.strip()
            if not have and reuse_only:
                return None
            if not have:
                have = run(["losetup", "-f", "--show", str(f)]).stdout.strip()
            if before and have != before:
                ui.info(
                    f"    {f.parent.parent.name}: disk {f.stem} is now {have} ({before} is taken); "
                    "the inventory names the new device, state on the node naming the old is stale"
                )
        if not record.exists() or record.read_text().strip() != have:
            record.write_text(have + "\n")
        return have

    @staticmethod
    def _loop_busy(dev: str) -> bool:
        """True when dev is attached to a file already (or is no loop device name at all)."""
        name = Path(dev).name
        if not name.startswith("loop") or not name[4:].isdigit():
            return True
        return Path(f"/sys/block/{name}/loop/backing_file").exists()

    def _attach_disks(self) -> dict[str, list[str]]:
        """Every node's data disks attached as loop devices: node -> their paths, spec order.

        Disks whose recorded number is free get it back first, so that a disk which must take
        a new number cannot take one another disk of the lab is about to ask for again.
        """
        files = {
            n["name"]: [self.disk_file(n["name"], i) for i in range(len(n["disks"]))]
            for n in self.spec["nodes"]
        }
        for fs in files.values():
            for f in fs:
                self._loop_for(f, reuse_only=True)
        return {node: [str(self._loop_for(f)) for f in fs] for node, fs in files.items()}

    def nspawn_pid(self, node: str) -> int | None:
        pidfile = self.node_dir(node) / "nspawn.pid"
        try:
            pid = int(pidfile.read_text())
        except (OSError, ValueError):
            return None
        argv = _cmdline(pid)
        if (
            _pid_alive(pid)
            and argv
            and "systemd-nspawn" in argv[0]
            and f"--machine={self.machine(node)}" in argv
        ):
            return pid
        return None

    def _ensure_running(self, node: dict, disks: list[str]) -> bool:
        """Start the node unless it runs, its disks (loop devices) bound in under their own
        names; True when started now."""
        name = node["name"]
        if self.nspawn_pid(name):
            return False
        self._kill_cgroup(name)  # leftovers of a node whose nspawn died
        nd = self.node_dir(name)
        binds = [f"--bind={nd / 'containerd'}:/var/lib/containerd"]
        if Path("/dev/kmsg").exists():  # the kubelet reads the kernel's OOM reports there
            binds.append("--bind-ro=/dev/kmsg")
        binds += [f"--bind={loop}" for loop in disks]
        cmd = [
            "systemd-nspawn",
            "--boot",
            f"--directory={nd / 'root'}",
            f"--machine={self.machine(name)}",
            f"--hostname={name}",
            "--register=no",
            "--keep-unit",
            f"--network-bridge={self.bridge}",
            "--console=passive",
            "--system-call-filter=add_key keyctl request_key",
            *(f"--capability={c}" for c in NODE_CAPABILITIES),
            "--resolv-conf=off",
            "--timezone=off",
            "--link-journal=no",
            *binds,
        ]
        cg_dirs = self._make_cgroups(name)
        log = (nd / "console.log").open("ab")

        def join_cgroups() -> None:
            me = str(os.getpid())
            for d in cg_dirs:
                (d / "cgroup.procs").write_text(me)

        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=join_cgroups,  # noqa: PLW1509  (join the node cgroups before exec)
        )
        log.close()
        (nd / "nspawn.pid").write_text(str(proc.pid))
        return True

    def _make_cgroups(self, node: str) -> list[Path]:
        dirs = []
        for h in cgroup_hierarchies():
            d = h / self.cgroup_name(node)
            d.mkdir(exist_ok=True)
            if h.name == "cpuset":
                for f in ("cpuset.cpus", "cpuset.mems"):
                    if not (d / f).read_text().strip():
                        (d / f).write_text((h / f).read_text())
            dirs.append(d)
        return dirs

    def _wait_ssh(self, names: list[str]) -> None:
        if not names:
            return
        addr = {n["name"]: n["address"] for n in self.spec["nodes"]}

        def wait(name: str) -> str | None:
            deadline = time.monotonic() + SSH_READY_TIMEOUT
            while time.monotonic() < deadline:
                if not self.nspawn_pid(name):
                    log = self.node_dir(name) / "console.log"
                    tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
                    return f"{name}: systemd-nspawn exited during boot; {log}:\n{tail}"
                with (
                    contextlib.suppress(OSError),
                    socket.create_connection((addr[name], 22), timeout=0.5) as s,
                ):
                    if s.recv(4).startswith(b"SSH-"):
                        break
                time.sleep(0.1)
            else:
                return f"{name}: no SSH on {addr[name]}:22 after {SSH_READY_TIMEOUT:.0f} s"
            res = run(
                ["ssh", "-F", str(self.state / "ssh_config"), "-o", "BatchMode=yes", name, "true"],
                check=False,
            )
            return None if res.returncode == 0 else f"{name}: ssh failed: {res.stderr.strip()}"

        with ThreadPoolExecutor(max_workers=len(names)) as pool:
            errors = [e for e in pool.map(wait, names) if e]
        if errors:
            raise ProviderError("nodes did not come up:\n" + "\n".join(errors))

    def node_init_pid(self, node: str) -> int | None:
        pid = self.nspawn_pid(node)
        if not pid:
            return None
        try:
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        except OSError:
            return None
        return int(children[0]) if children else None

    def _cgroups_writable(self, node: str) -> None:
        """Let containerd/runc inside the node manage cgroups (see FACTS: remount rw)."""
        init = self.node_init_pid(node)
        if not init:
            return
        script = (
            'for d in /sys/fs/cgroup/*/; do mountpoint -q "$d" && '
            'mount -o remount,bind,rw "$d" 2>/dev/null; done; '
            "mount -o remount,rw /sys/fs/cgroup 2>/dev/null; true"
        )
        run(["nsenter", "-t", str(init), "-m", "sh", "-c", script], check=False)

    # ---------------------------------------------------------------- status
    def status(self) -> list[NodeStatus]:
        out = []
        for node in self.spec["nodes"]:
            name = node["name"]
            if self.nspawn_pid(name):
                state = "running"
            elif self._procs(self._node_cgroups().get(name, [])):
                state = "orphaned"  # its nspawn died, processes of the node still run
            elif self.node_dir(name).exists():
                state = "stopped"
            else:
                state = "absent"
            loops = [
                self.attached_loop(f) if (f := self.disk_file(name, i)).exists() else None
                for i in range(len(node["disks"]))
            ]
            out.append(
                NodeStatus(
                    name,
                    state,
                    node["address"],
                    [lo or "(not attached)" for lo in loops],
                )
            )
        return out

    # ---------------------------------------------------------------- destroy
    def _node_cgroups(self) -> dict[str, list[Path]]:
        """node -> its cgroup dirs, found by name in every hierarchy."""
        if not self.names["cgroup"]:
            return {}
        prefix = self.names["cgroup"] + "."
        found: dict[str, list[Path]] = {}
        for h in cgroup_hierarchies():
            for d in h.glob(prefix + "*"):
                found.setdefault(d.name[len(prefix) :], []).append(d)
        return found

    @staticmethod
    def _procs(dirs: list[Path]) -> set[int]:
        pids: set[int] = set()
        for top in dirs:
            for d in _walk_dirs(top):
                with contextlib.suppress(OSError, ValueError):
                    pids |= {int(p) for p in (d / "cgroup.procs").read_text().split()}
        return pids

    def _kill_cgroup(self, node: str, graceful: bool = False) -> None:
        dirs = self._node_cgroups().get(node, [])
        if not dirs:
            return
        if graceful:
            for pid in self._procs(dirs):
                argv = _cmdline(pid)
                if argv and "systemd-nspawn" in argv[0]:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + (STOP_TIMEOUT if graceful else 0)
        while self._procs(dirs) and time.monotonic() < deadline:
            time.sleep(0.1)
        deadline = time.monotonic() + 5
        while (pids := self._procs(dirs)) and time.monotonic() < deadline:
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.05)
        if self._procs(dirs):
            raise ProviderError(f"processes of node {node} survive SIGKILL in {dirs[0]}")

    def _remove_cgroups(self, node: str) -> None:
        for top in self._node_cgroups().get(node, []):
            for d in reversed(_walk_dirs(top)):  # children before parents
                with contextlib.suppress(OSError):
                    d.rmdir()
            if top.exists():
                raise ProviderError(f"cannot remove cgroup dir {top}")

    def stop_node(self, node: str) -> None:
        self._kill_cgroup(node, graceful=True)
        self._remove_cgroups(node)

    def destroy(self) -> None:
        if os.geteuid() != 0:
            raise ProviderError("the local provider needs root to remove a lab")
        with self.lock():
            registry.require_owner(self.lab, self.state)
            sshconf.kill_masters(self.state)
            serve.stop_in(self.state)  # the bundle's file server and registry
            nodes = set(self._node_cgroups()) | {n["name"] for n in self.spec["nodes"]}
            with ThreadPoolExecutor(max_workers=max(1, len(nodes))) as pool:
                list(pool.map(self.stop_node, sorted(nodes)))
            self._unmount_all()
            self._detach_loops()
            if self.table:
                run(["nft", "delete", "table", "ip", self.table], check=False)
            self._accept_docker_forwarding(remove=True)
            with host_lock():
                if self.bridge and self._bridge_exists():
                    run(["ip", "link", "del", self.bridge])
                restore_host_sysctls()
            self._remove_state()
            registry.release(self.lab, self.state)

    def _remove_state(self) -> None:
        """Move the state dir out of the way in one step (nothing a later `up` could mistake
        for a node stays under its name), then delete it; leftovers of an interrupted earlier
        removal go too."""
        if self.state.exists():
            self.state.replace(self.state.with_name(f".{self.lab}.removing-{os.getpid()}"))
        for old in self.state.parent.glob(f".{self.lab}.removing-*"):
            shutil.rmtree(old)

    def _unmount_all(self) -> None:
        prefix = str(self.state) + "/"
        mounts = []
        for line in Path("/proc/mounts").read_text().splitlines():
            target = line.split()[1].replace("\\040", " ")
            if target.startswith(prefix):
                mounts.append(target)
        for target in sorted(mounts, key=len, reverse=True):
            if run(["umount", target], check=False).returncode != 0:
                run(["umount", "-l", target])
        for line in Path("/proc/mounts").read_text().splitlines():
            if line.split()[1].startswith(prefix):
                raise ProviderError(f"still mounted: {line.split()[1]}; not removing {self.state}")

    def _detach_loops(self) -> None:
        prefix = str(self.state) + "/"
        listing = json.loads(
            run(["losetup", "--list", "--json", "-O", "NAME,BACK-FILE"]).stdout or "{}"
        )
        for dev in listing.get("loopdevices", []):
            back = (dev.get("back-file") or "").removesuffix(" (deleted)")
            if back.startswith(prefix):
                run(["losetup", "-d", dev["name"]])


PROVIDER_CLASS = LocalProvider
