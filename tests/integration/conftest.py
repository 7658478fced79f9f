"""Integration fixtures: real local labs in a temp state root, and a leak check after each test."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from clusterlab import paths, registry, serve, sshconf
from clusterlab.providers import local
from clusterlab.providers.local import LocalProvider
from clusterlab.spec import normalize

MISSING = [
    t for t in ("systemd-nspawn", "debootstrap", "nft", "losetup", "sgdisk") if not shutil.which(t)
]
if os.geteuid() != 0:
    SKIP = "integration tests need root (bridges, loop devices, nspawn)"
elif MISSING:
    SKIP = f"integration tests need {', '.join(MISSING)} (run `inv setup`)"
else:
    SKIP = ""


def pytest_collection_modifyitems(config, items):
    if not SKIP:
        return
    for item in items:
        if "integration" in item.keywords:
            item.add_marker(pytest.mark.skip(reason=SKIP))


class Labs:
    """Makes labs with their own inventories root and state root; remembers them for the leak check."""

    def __init__(self, root: Path):
        self.root = root
        self.inventories = root / "inventories"
        self.state_root = root / "state"
        self.made: list[LocalProvider] = []

    def spec(
        self, name: str, net: int, nodes: int = 1, disks: int | list[str] = 1, **extra
    ) -> dict:
        """A local lab's spec (written to its lab.yml); disks: how many of 5G, or their sizes."""
        sizes = ["5G"] * disks if isinstance(disks, int) else disks
        raw = {
            "name": name,
            "provider": "local",
            "os": "debian12",
            "network": {"cidr": f"10.213.{net}.0/24"},
            "nodes": {"count": nodes, "disks": [{"size": s} for s in sizes]},
            **extra,
        }
        d = self.inventories / name
        d.mkdir(parents=True, exist_ok=True)
        (d / "lab.yml").write_text(yaml.safe_dump(raw))
        return normalize(raw)

    def provider(self, spec: dict) -> LocalProvider:
        prov = LocalProvider(spec)
        self.made.append(prov)
        return prov

    def env(self) -> dict[str, str]:
        return dict(
            os.environ,
            CLUSTERLAB_INVENTORIES=str(self.inventories),
            CLUSTERLAB_STATE=str(self.state_root),
        )

    @staticmethod
    def cli_argv(*args: str) -> list[str]:
        return [sys.executable, "-m", "clusterlab", *args]

    def cli(
        self,
        *args: str,
        check: bool = True,
        env_extra: dict | None = None,
        timeout: float | None = None,
    ) -> subprocess.CompletedProcess:
        res = subprocess.run(
            self.cli_argv(*args),
            env={**self.env(), **(env_extra or {})},
            capture_output=True,
            text=True,
            check=False,
            timeout=timeout,
        )
        if check and res.returncode != 0:
            raise AssertionError(
                f"clusterlab {' '.join(args)} exited {res.returncode}:\n{res.stdout}\n{res.stderr}"
            )
        return res


def lab_object_names(lab: str) -> dict[str, re.Pattern]:
    """Patterns of a local lab's machine-wide objects under any slot (and an earlier
    version's names): found by name, whatever the record says now."""
    short = re.escape(lab)  # the bridge: legacy name here, slot names in leaks()
    legacy = registry.legacy_names(lab)
    return {
        "bridge": re.compile(rf"^{re.escape(legacy['bridge'])}$"),
        "table": re.compile(rf"^clusterlab_(\d+_)?{re.escape(lab.replace('-', '_'))}$"),
        "cgroup": re.compile(rf"^clusterlab\.(\d+\.)?{short}\."),
        "machine": re.compile(rf"^--machine=(cl\d+-)?{short}-"),
    }


def leaks(prov) -> list[str]:
    # a bundle served to the lab: its file server and registry (any provider)
    found = [f"serving process {pid} ({kind})" for pid, kind in serve.processes(prov.state).items()]
    if not isinstance(prov, LocalProvider):  # other providers own nothing but the state dir
        return found + ([f"state dir {prov.state}"] if prov.state.exists() else [])
    pat = lab_object_names(prov.lab)
    bridges = [
        p.name
        for p in Path("/sys/class/net").iterdir()
        if pat["bridge"].match(p.name)
        or (
            (m := re.match(r"^cl-(\d+)-", p.name))
            and registry.slot_names(int(m[1]), prov.lab)["bridge"] == p.name
        )
    ]
    found += [f"bridge {b}" for b in bridges]
    state = str(prov.state) + "/"
    for line in Path("/proc/mounts").read_text().splitlines():
        if line.split()[1].startswith(state):
            found.append(f"mount {line.split()[1]}")
    lo = json.loads(
        subprocess.run(["losetup", "--list", "--json"], capture_output=True, text=True).stdout
        or "{}"
    )
    for dev in lo.get("loopdevices", []):
        if (dev.get("back-file") or "").startswith(state):
            found.append(f"loop {dev['name']} -> {dev['back-file']}")
    for pid in filter(str.isdigit, os.listdir("/proc")):
        argv = local._cmdline(int(pid))
        if argv and "systemd-nspawn" in argv[0] and any(pat["machine"].match(a) for a in argv):
            found.append(f"nspawn process {pid}")
    tables = subprocess.run(["nft", "-j", "list", "tables"], capture_output=True, text=True).stdout
    for item in json.loads(tables or "{}").get("nftables", []):
        name = item.get("table", {}).get("name", "")
        if pat["table"].match(name):
            found.append(f"nft table {name}")
    for h in local.cgroup_hierarchies():
        found += [f"cgroup {d}" for d in h.iterdir() if pat["cgroup"].match(d.name)]
    if prov.state.exists():
        found.append(f"state dir {prov.state}")
    found += [f"removed state dir {d}" for d in prov.state.parent.glob(f".{prov.lab}.removing-*")]
    if registry.entry(prov.lab) and registry.entry(prov.lab)["state_dir"] == str(prov.state):
        found.append(f"record of {prov.lab} in {registry.record_file()}")
    veths = subprocess.run(
        ["ip", "-j", "link", "show", "type", "veth"], capture_output=True, text=True
    ).stdout
    for link in json.loads(veths or "[]"):
        if link.get("master") in bridges:
            found.append(f"veth {link['ifname']}")
    return found


def lab_bridges() -> set[str]:
    return {p.name for p in Path("/sys/class/net").glob("cl-*")}


@contextlib.contextmanager
def labs_in(root: Path) -> Iterator[Labs]:
    """Labs under root; afterwards every lab made is destroyed and leaks are reported.

    Host sysctls must be back to their values from before when no lab remains that was not
    there before (the last lab's `down` restores them).
    """
    lab = Labs(root)
    lab.inventories.mkdir()
    bridges, sysctls = lab_bridges(), local.host_sysctl_values()
    ssh_masters = set(sshconf.clusterlab_masters())
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CLUSTERLAB_STATE", str(lab.state_root))
        mp.setenv("CLUSTERLAB_INVENTORIES", str(lab.inventories))
        mp.setattr(paths, "INVENTORIES", lab.inventories)
        yield lab
    left = {p.lab: leaks(p) for p in lab.made}
    for prov in lab.made:  # clean up whatever the test left, then report it
        try:
            prov.destroy()
        except Exception as exc:
            left.setdefault(prov.lab, []).append(f"destroy failed: {exc}")
    deadline = time.monotonic() + 3  # a master told to exit needs a moment
    while (new := set(sshconf.clusterlab_masters()) - ssh_masters) and time.monotonic() < deadline:
        time.sleep(0.1)
    if new:
        masters = sshconf.clusterlab_masters()
        left["ssh"] = [f"ssh control master {pid} ({masters.get(pid)})" for pid in sorted(new)]
    if lab_bridges() <= bridges:
        now = local.host_sysctl_values()
        left["host"] = [f"sysctl {k}={now[k]} (was {v})" for k, v in sysctls.items() if now[k] != v]
    left = {k: v for k, v in left.items() if v}
    if left:
        pytest.fail(f"leaked after the test: {left}")


@pytest.fixture
def labs(tmp_path):
    with labs_in(tmp_path) as lab:
        yield lab


@pytest.fixture(scope="module")
def module_labs(tmp_path_factory):
    """Labs shared by the tests of one module (one lab, several checks)."""
    with labs_in(tmp_path_factory.mktemp("labs")) as lab:
        yield lab
