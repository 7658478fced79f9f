"""The static provider: labs on machines that already exist.

Nodes come from the spec (address, user, port, key, become method, data disks by device
path). `create` never changes a machine: it checks each node answers over SSH, records host
keys only when told to trust new hosts (trust on first use), refuses changed host keys,
refuses data disks that are mounted, swap or the root filesystem, and writes the lab's
ssh_config and inventory. `destroy` removes the lab's state and nothing else.
"""

from __future__ import annotations

import json
import shlex
import shutil
import socket
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from clusterlab import become, inventory, paths, serve, sshconf, ui
from clusterlab.inventory import Connection
from clusterlab.providers.base import NodeStatus, Provider, ProviderError

CONNECT_TIMEOUT = 5.0
DISK_TOOL = paths.ROOT / "roles" / "common" / "disk_tool" / "files" / "clusterlab-disk"


def fingerprint(pubkey_line: str) -> str:
    """SHA256 fingerprint of one 'type base64' public key line, as ssh-keygen -l prints it."""
    proc = subprocess.run(
        ["ssh-keygen", "-l", "-f", "-"],
        input=pubkey_line + "\n",
        capture_output=True,
        text=True,
        check=False,
    )
    parts = proc.stdout.split()
    return parts[1] if len(parts) > 1 else "?"


class StaticProvider(Provider):
    name = "static"

    # ---------------------------------------------------------------- helpers
    def _node_key_file(self, node: dict) -> str | None:
        return str(Path(node["key_file"]).expanduser()) if node.get("key_file") else None

    def planned_connections(self) -> dict[str, Connection]:
        out = {}
        for n in self.spec["nodes"]:
            become = n["user"] != "root" and n["become_method"] != "none"
            out[n["name"]] = Connection(
                host=n["address"],
                user=n["user"],
                port=n["port"],
                key_file=self._node_key_file(n),
                become=become,
                become_method=n["become_method"] if become else "sudo",
            )
        return out

    @staticmethod
    def _reachable(address: str, port: int, timeout: float = CONNECT_TIMEOUT) -> str | None:
        """None when something answers SSH on address:port, else why not."""
        try:
            with socket.create_connection((address, port), timeout=timeout) as s:
                s.settimeout(timeout)
                banner = s.recv(64)
        except TimeoutError:
            return f"unreachable: no answer from {address}:{port} within {timeout:.0f} s"
        except OSError as exc:
            return f"unreachable: {address}:{port}: {exc.strerror or exc}"
        if not banner.startswith(b"SSH-"):
            return f"unreachable: {address}:{port} answers but is not an SSH server"
        return None

    @staticmethod
    def _scan(address: str, port: int) -> list[str]:
        """Host keys the node offers now ('type base64' lines)."""
        proc = subprocess.run(
            [
                "ssh-keyscan",
                "-T",
                str(int(CONNECT_TIMEOUT)),
                "-p",
                str(port),
                "-t",
                "ed25519,ecdsa,rsa",
                address,
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        keys = []
        for line in proc.stdout.splitlines():
            fields = line.split()
            if len(fields) >= 3 and not line.startswith("#"):
                keys.append(f"{fields[1]} {fields[2]}")
        return keys

    def _known(self) -> dict[str, list[str]]:
        """known_hosts of the lab: name -> ['type base64', ...]."""
        return sshconf.read_known_hosts(self.state)

    # ---------------------------------------------------------------- create
    def create(self) -> dict[str, Connection]:
        nodes = self.spec["nodes"]
        with ThreadPoolExecutor(max_workers=len(nodes)) as pool:
            reach = dict(
                zip(
                    [n["name"] for n in nodes],
                    pool.map(lambda n: self._reachable(n["address"], n["port"]), nodes),
                    strict=True,
                )
            )
        problems = [f"{name}: {why}" for name, why in reach.items() if why]
        if problems:
            raise ProviderError("nodes do not answer over SSH:\n" + "\n".join(problems))

        known = self._known()
        entries: dict[str, tuple[list[str], str]] = {}
        for n in nodes:
            offered = self._scan(n["address"], n["port"])
            if not offered:
                problems.append(
                    f"{n['name']}: ssh-keyscan got no host key from {n['address']}:{n['port']}"
                )
                continue
            ids = [n["name"], n["address"] if n["port"] == 22 else f"[{n['address']}]:{n['port']}"]
            recorded = known.get(n["name"]) or known.get(ids[1])
            if recorded:
                match = [k for k in offered if k in recorded]
                if not match:
                    problems.append(
                        f"{n['name']}: host key changed: {n['address']} now offers "
                        f"{', '.join(fingerprint(k) for k in offered)}, the lab knows "
                        f"{', '.join(fingerprint(k) for k in recorded)}. If the machine was rebuilt, "
                        f"remove its line from {self.state / 'known_hosts'}; otherwise do not connect"
                    )
                    continue
                entries[n["name"]] = (ids, match[0])
            elif self.trust_new_hosts:
                entries[n["name"]] = (ids, offered[0])
                ui.info(
                    f"    trusting {n['name']} ({n['address']}) on first use: {fingerprint(offered[0])}"
                )
            else:
                problems.append(
                    f"{n['name']}: unknown host key: {n['address']} offers {fingerprint(offered[0])} "
                    f"({offered[0].split()[0]}). Compare it with `ssh-keygen -lf "
                    f"/etc/ssh/ssh_host_{offered[0].split()[0].removeprefix('ssh-').split('-')[0]}_key.pub` "
                    "on the machine, then run again with --trust-new-hosts"
                )
        if problems:
            raise ProviderError("host keys:\n" + "\n".join(problems))

        self.state.mkdir(parents=True, exist_ok=True)
        sshconf.write_known_hosts(self.state, entries)
        hosts = [
            sshconf.SshHost(n["name"], n["address"], n["user"], n["port"], self._node_key_file(n))
            for n in nodes
        ]
        sshconf.write_ssh_config(self.state, hosts, default_key=None)
        self._check_login_and_disks()
        conns = self.planned_connections()
        inventory.write(self.spec, conns, self.state, sshconf.common_args(self.state))
        return conns

    def _ssh(
        self, node: str, command: str, stdin: str | None = None
    ) -> subprocess.CompletedProcess:
        sshconf.runtime_dir()  # the ssh_config's ControlPath directory (gone after a reboot)
        return subprocess.run(
            ["ssh", "-F", str(self.state / "ssh_config"), "-o", "BatchMode=yes", node, command],
            input=stdin,
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )

    def _check_login_and_disks(self) -> None:
        """Log in to every node; refuse data disks that are mounted, swap or the root fs."""
        tool = DISK_TOOL.read_text()

        def check(n: dict) -> list[str]:
            res = self._ssh(n["name"], "true")
            if res.returncode != 0:
                why = (
                    res.stderr.strip().splitlines()[-1]
                    if res.stderr.strip()
                    else f"exit {res.returncode}"
                )
                kind = "auth refused" if "Permission denied" in res.stderr else "login failed"
                return [f"{n['name']}: {kind}: {why}"]
            out = []
            sudo, feed = "", tool
            if n["user"] != "root":
                if become.needs_password(self.state / "ssh_config", n["name"]):
                    sudo, feed = "sudo -S -p '' ", become.password(self.lab) + "\n" + tool
                else:
                    sudo = "sudo -n "
            for d in n["disks"]:
                # The device is one quoted word of the remote shell's command line, never code.
                guard = f"{sudo}bash -s guard {shlex.quote(d['device'])}"
                res = self._ssh(n["name"], guard, stdin=feed)
                if res.returncode != 0:
                    out.append(f"{n['name']}: cannot inspect {d['device']}: {res.stderr.strip()}")
                    continue
                try:
                    verdict = json.loads(res.stdout.strip().splitlines()[-1])
                except (ValueError, IndexError):
                    verdict = {"ok": False, "reason": f"unreadable answer {res.stdout.strip()!r}"}
                if verdict.get("ok") is not True:
                    reason = verdict.get("reason", "refused")
                    out.append(f"{n['name']}: data disk {d['device']} refused: {reason}")
            return out

        with ThreadPoolExecutor(max_workers=len(self.spec["nodes"])) as pool:
            problems = [p for found in pool.map(check, self.spec["nodes"]) for p in found]
        if problems:
            raise ProviderError("nodes refused before any stage ran:\n" + "\n".join(problems))

    # ---------------------------------------------------------------- status, destroy
    def status(self) -> list[NodeStatus]:
        nodes = self.spec["nodes"]
        with ThreadPoolExecutor(max_workers=len(nodes)) as pool:
            reach = list(pool.map(lambda n: self._reachable(n["address"], n["port"], 2.0), nodes))
        return [
            NodeStatus(
                n["name"],
                "unreachable" if why else "reachable",
                n["address"],
                [d["device"] for d in n["disks"]],
            )
            for n, why in zip(nodes, reach, strict=True)
        ]

    def destroy(self) -> None:
        sshconf.kill_masters(self.state)
        serve.stop_in(self.state)  # the bundle's file server and registry
        if self.state.exists():
            shutil.rmtree(self.state)
        ui.info(
            f"    static provider: the machines were not touched; removed the lab's state {self.state}"
        )


PROVIDER_CLASS = StaticProvider
