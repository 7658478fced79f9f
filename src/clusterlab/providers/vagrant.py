"""The vagrant provider: the lab spec as Vagrant VMs (libvirt by default, or VirtualBox).

Python owns every decision: `plan(spec)` turns the validated spec into the JSON the
top-level Vagrantfile reads (box, addresses, CPUs, memory, disk files). After `vagrant up`,
`vagrant ssh-config` becomes the lab's ssh_config and inventory.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import subprocess
from pathlib import Path

from clusterlab import ansible, inventory, paths, serve, sshconf, ui
from clusterlab.inventory import Connection
from clusterlab.oses import OSES
from clusterlab.providers.base import NodeStatus, Provider, ProviderError
from clusterlab.providers.static import fingerprint

VBOX_DEFAULT_RANGE = ipaddress.IPv4Network("192.168.56.0/21")
LIBVIRT_PLUGIN_FILE = Path("/usr/share/vagrant-plugins/plugins.d/vagrant-libvirt.json")


def plan(spec: dict, state: Path) -> dict:
    """What the Vagrantfile builds, decided here (the Vagrantfile only maps it to config)."""
    os_info = OSES[spec["os"]]
    box = spec["vagrant"]["box"] or os_info.vagrant_box
    if not box:
        raise ProviderError(
            f"no Vagrant box is known for os {spec['os']}; set vagrant.box in the spec"
        )
    net = ipaddress.IPv4Network(spec["network"]["cidr"])
    machines = []
    for node in spec["nodes"]:
        disks = []
        for d in node["disks"]:
            target = Path(d["device"]).name  # vdb, vdc (libvirt) / sdb, sdc (VirtualBox)
            disks.append(
                {
                    "size": d["size"],
                    "size_mb": d["size_bytes"] // 2**20,
                    "target": target,
                    "device": d["device"],
                    "file": str(state / "disks" / f"{node['name']}-{target}.vdi"),
                }
            )
        machines.append(
            {
                "name": node["name"],
                "hostname": node["name"],
                "address": node["address"],
                "netmask": str(net.netmask),
                "cpus": node["cpus"],
                "memory": node["memory"],
                "disks": disks,
            }
        )
    return {
        "lab": spec["name"],
        "provider": spec["vagrant"]["provider"],
        "box": box,
        "box_url": (os_info.vagrant_box_url or None) if not spec["vagrant"]["box"] else None,
        "prefix": f"clusterlab-{spec['name']}-",
        "network_name": f"clusterlab-{spec['name']}",
        "libvirt_driver": spec["vagrant"]["libvirt_driver"],
        "synced_folders": False,
        "machines": machines,
    }


def parse_ssh_config(text: str) -> dict[str, dict[str, str]]:
    """`vagrant ssh-config` output -> {host: {hostname, user, port, identityfile}}."""
    hosts: dict[str, dict[str, str]] = {}
    current: dict[str, str] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, _, value = line.partition(" ")
        if key.lower() == "host":
            current = hosts.setdefault(value.strip(), {})
        elif current is not None:
            current.setdefault(key.lower(), value.strip().strip('"'))
    return hosts


def vbox_allowed_ranges(
    conf: Path = Path("/etc/vbox/networks.conf"),
) -> list[ipaddress.IPv4Network]:
    ranges = [VBOX_DEFAULT_RANGE]
    if conf.exists():
        for line in conf.read_text().splitlines():
            if line.strip().startswith("*"):
                for item in line.strip()[1:].split():
                    try:
                        ranges.append(ipaddress.IPv4Network(item, strict=False))
                    except ValueError:
                        continue
    return ranges


class VagrantProvider(Provider):
    name = "vagrant"

    def __init__(self, spec: dict):
        super().__init__(spec)
        self.plan_file = self.state / "vagrant-plan.json"

    def env(self) -> dict[str, str]:
        e = dict(os.environ)
        e.update(
            VAGRANT_CWD=str(paths.ROOT),
            VAGRANT_DOTFILE_PATH=str(self.state / ".vagrant"),
            CLUSTERLAB_VAGRANT_PLAN=str(self.plan_file),
            VAGRANT_DEFAULT_PROVIDER=self.spec["vagrant"]["provider"],
        )
        return e

    def vagrant(
        self, *args: str, log: Path | None = None, check: bool = True
    ) -> subprocess.CompletedProcess:
        proc = subprocess.run(
            ["vagrant", *args],
            env=self.env(),
            capture_output=True,
            text=True,
            check=False,
            stdin=subprocess.DEVNULL,
        )
        if log:
            with ansible.private_file(log) as fh:
                fh.write(f"$ vagrant {' '.join(args)}\n{proc.stdout}{proc.stderr}\n")
        if check and proc.returncode != 0:
            tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-15:])
            raise ProviderError(
                f"vagrant {' '.join(args)} failed (exit {proc.returncode}):\n{tail}"
            )
        return proc

    def check_host(self) -> None:
        if not shutil.which("vagrant"):
            raise ProviderError(
                "vagrant not found; install it with: apt-get install -y vagrant vagrant-libvirt"
            )
        provider = self.spec["vagrant"]["provider"]
        if provider == "libvirt":
            listed = subprocess.run(
                ["vagrant", "plugin", "list"], capture_output=True, text=True, check=False
            )
            if "vagrant-libvirt" not in listed.stdout and not LIBVIRT_PLUGIN_FILE.exists():
                raise ProviderError(
                    "the vagrant-libvirt plugin is missing; install it with: apt-get install -y vagrant-libvirt "
                    "libvirt-daemon-system qemu-system-x86 (or `vagrant plugin install vagrant-libvirt`)"
                )
        else:
            if not shutil.which("VBoxManage"):
                raise ProviderError(
                    "VirtualBox (VBoxManage) not found; install VirtualBox or use vagrant.provider: libvirt"
                )
            net = ipaddress.IPv4Network(self.spec["network"]["cidr"])
            if not any(net.subnet_of(r) for r in vbox_allowed_ranges() if r.version == 4):
                raise ProviderError(
                    f"VirtualBox only allows host-only addresses in {VBOX_DEFAULT_RANGE} unless "
                    f"/etc/vbox/networks.conf allows more; network.cidr {net} is outside. Add "
                    f"'* {net}' to /etc/vbox/networks.conf or pick a cidr inside {VBOX_DEFAULT_RANGE}"
                )

    def write_plan(self) -> dict:
        p = plan(self.spec, self.state)
        self.state.mkdir(parents=True, exist_ok=True)
        (self.state / "disks").mkdir(exist_ok=True)
        self.plan_file.write_text(json.dumps(p, indent=2) + "\n")
        return p

    def create(self) -> dict[str, Connection]:
        self.check_host()
        self.write_plan()
        log = self.state / "logs" / "provision.log"
        args = ["up", f"--provider={self.spec['vagrant']['provider']}"]
        if self.spec["vagrant"]["provider"] == "virtualbox":
            args.append("--no-parallel")
        ui.info(f"    vagrant up (log: {log}); a first boot takes minutes")
        self.vagrant(*args, log=log)
        hosts = parse_ssh_config(self.vagrant("ssh-config", log=log).stdout)
        conns: dict[str, Connection] = {}
        entries: dict[str, tuple[list[str], str]] = {}
        ssh_hosts = []
        for node in self.spec["nodes"]:
            h = hosts.get(node["name"])
            if not h:
                raise ProviderError(f"vagrant ssh-config has no entry for {node['name']}")
            port = int(h.get("port", "22"))
            key = h.get("identityfile")
            conns[node["name"]] = Connection(
                host=h["hostname"],
                user=h.get("user", "vagrant"),
                port=port,
                key_file=key,
                become=True,
            )
            ssh_hosts.append(
                sshconf.SshHost(node["name"], h["hostname"], h.get("user", "vagrant"), port, key)
            )
            name_ids = [node["name"], h["hostname"] if port == 22 else f"[{h['hostname']}]:{port}"]
            entries[node["name"]] = (name_ids, self._host_key(node["name"], h["hostname"], port))
        sshconf.write_known_hosts(self.state, entries)
        sshconf.write_ssh_config(self.state, ssh_hosts, default_key=None)
        inventory.write(self.spec, conns, self.state, sshconf.common_args(self.state))
        return conns

    def _host_key(self, name: str, address: str, port: int) -> str:
        """The node's host key: recorded on first sight (the VM was made by this lab's first
        `up`), afterwards the one recorded, which the node must still offer."""
        scan = subprocess.run(
            ["ssh-keyscan", "-T", "10", "-p", str(port), "-t", "ed25519", address],
            capture_output=True,
            text=True,
            check=False,
        )
        offered = [
            " ".join(ln.split()[1:3])
            for ln in scan.stdout.splitlines()
            if ln and not ln.startswith("#") and len(ln.split()) >= 3
        ]
        if not offered:
            raise ProviderError(f"{name}: no SSH host key from {address}:{port}")
        recorded = sshconf.read_known_hosts(self.state).get(name)
        if not recorded:
            ui.info(f"    {name}: host key recorded on first sight: {fingerprint(offered[0])}")
            return offered[0]
        match = [k for k in offered if k in recorded]
        if not match:
            raise ProviderError(
                f"{name}: host key changed: {address}:{port} now offers "
                f"{', '.join(fingerprint(k) for k in offered)}, the lab recorded "
                f"{', '.join(fingerprint(k) for k in recorded)} on its first `up`. If the VM was "
                f"rebuilt outside clusterlab, run `clusterlab down` first (or remove its line from "
                f"{self.state / 'known_hosts'}); otherwise do not connect"
            )
        return match[0]

    def status(self) -> list[NodeStatus]:
        states: dict[str, str] = {}
        if self.plan_file.exists():
            out = self.vagrant("status", "--machine-readable", check=False).stdout
            for line in out.splitlines():
                parts = line.split(",")
                if len(parts) >= 4 and parts[2] == "state":
                    states[parts[1]] = parts[3]
        return [
            NodeStatus(
                n["name"],
                states.get(n["name"], "absent"),
                n["address"],
                [d["device"] for d in n["disks"]],
            )
            for n in self.spec["nodes"]
        ]

    def destroy(self) -> None:
        sshconf.kill_masters(self.state)
        serve.stop_in(self.state)  # the bundle's file server and registry
        if self.plan_file.exists() and shutil.which("vagrant"):
            self.vagrant("destroy", "-f", log=self.state / "logs" / "destroy.log")
        if self.state.exists():
            shutil.rmtree(self.state)


PROVIDER_CLASS = VagrantProvider
