"""Values reaching ssh_config, known_hosts and the nodes' shells stay data.

A newline in `user` or `key_file` used to add ssh_config lines (`ProxyCommand …` ran as root
on `ssh -F`); a device path reached the remote shell of the static provider's guard as code.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from clusterlab import sshconf
from clusterlab.providers import ProviderError
from clusterlab.providers.static import StaticProvider
from clusterlab.providers.vagrant import VagrantProvider, parse_ssh_config

HOSTILE = [
    "root\n  ProxyCommand touch /tmp/pwned",
    "root\r\nProxyCommand touch /tmp/pwned",
    "root ProxyCommand=touch",
    "root\tx",
    'root"',
    "root'",
    "a\\b",
    "root\x00",
    "root\x1b[31m",
    "root\u2028ProxyCommand touch /tmp/pwned",
    "",
]


@pytest.fixture
def state():
    path = Path(tempfile.mkdtemp(prefix="clsec-"))
    yield path
    shutil.rmtree(path)


@pytest.fixture(autouse=True)
def runtime(state, monkeypatch):
    monkeypatch.setenv(sshconf.RUNTIME_ENV, str(state / "rt"))


def _host(**kw) -> sshconf.SshHost:
    base = {"name": "node1", "address": "10.9.0.11", "user": "root", "port": 22, "key_file": None}
    base.update(kw)
    return sshconf.SshHost(**base)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        (f, v)
        for f in ("user", "key_file", "name", "address")
        for v in HOSTILE
        if v or f != "key_file"  # an empty key_file means none
    ],
    ids=repr,
)
def test_hostile_value_is_refused_and_nothing_written(state, field, value):
    before = "# the lab's previous ssh_config\n"
    (state / "ssh_config").write_text(before)
    with pytest.raises(sshconf.SshConfigError) as exc:
        sshconf.write_ssh_config(state, [_host(), _host(**{"name": "node2", field: value})], None)
    assert repr(value) in str(exc.value)
    assert (state / "ssh_config").read_text() == before


@pytest.mark.parametrize("port", ["22\nProxyCommand touch /tmp/pwned", 0, 70000, True, "22"])
def test_port_must_be_a_tcp_port_number(state, port):
    with pytest.raises(sshconf.SshConfigError):
        sshconf.write_ssh_config(state, [_host(port=port)], None)
    assert not (state / "ssh_config").exists()


@pytest.mark.parametrize("name", ["node*", "!node1", "node1,evil"])
def test_host_patterns_are_refused(state, name):
    """`Host *` would give every later host the first block's options."""
    with pytest.raises(sshconf.SshConfigError):
        sshconf.write_ssh_config(state, [_host(name=name)], None)


def test_valid_values_reach_ssh_as_written(state):
    key = state / "id_ed25519"
    sshconf.write_ssh_config(state, [_host(user="lab-user.1", port=2222, key_file=str(key))], None)
    out = subprocess.run(
        ["ssh", "-F", str(state / "ssh_config"), "-G", "node1"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    assert "user lab-user.1" in out
    assert "port 2222" in out
    assert f"identityfile {key}" in out
    assert not any(line.startswith("proxycommand") for line in out)


@pytest.mark.parametrize(
    ("names", "key"),
    [
        (["node1\n@cert-authority *"], "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBbf"),
        (["node1"], "ssh-ed25519 AAAA\nx"),
        (["node1"], "ssh-ed25519 AAAA$(id)"),
        (["node1 *"], "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBbf"),
        (["node1"], "@cert-authority AAAA"),
    ],
)
def test_known_hosts_lines_cannot_be_forged(state, names, key):
    with pytest.raises(sshconf.SshConfigError):
        sshconf.write_known_hosts(state, {"node1": (names, key)})
    assert not (state / "known_hosts").exists()


def test_vagrant_ssh_config_values_are_checked_before_writing(state):
    """What `vagrant ssh-config` prints becomes the lab's ssh_config only word by word."""
    hosts = parse_ssh_config(
        "Host node1\n  HostName 192.168.56.11\n  User vagrant ProxyCommand=touch /tmp/pwned\n"
        '  Port 22\n  IdentityFile "/home/a b/.vagrant.d/insecure_private_key"\n'
    )
    h = hosts["node1"]
    for field, value in (("user", h["user"]), ("key_file", h["identityfile"])):
        with pytest.raises(sshconf.SshConfigError):
            sshconf.write_ssh_config(state, [_host(**{field: value})], None)
    assert not (state / "ssh_config").exists()


class LocalShellStatic(StaticProvider):
    """The static provider with its node's sshd played by this machine's /bin/sh: sshd runs
    the command it receives with `$SHELL -c COMMAND`, stdin attached, which is what this does."""

    def _ssh(self, node, command, stdin=None):
        return subprocess.run(
            ["sh", "-c", command],
            input=stdin,
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )


def test_device_path_reaches_the_guard_as_one_word(state):
    mark = state / "pwned"
    device = f"/dev/sdb$(touch {mark})"
    spec = {
        "name": "secstatic",
        "provider": "static",
        "nodes": [
            {
                "name": "s1",
                "address": "10.9.0.11",
                "user": "root",
                "port": 22,
                "become_method": "sudo",
                "disks": [{"device": device}, {"device": "/dev/sdc;touch " + str(mark)}],
            }
        ],
    }
    prov = LocalShellStatic(spec)
    with pytest.raises(ProviderError) as exc:
        prov._check_login_and_disks()
    assert not mark.exists(), "a device path ran as code in the node's shell"
    # the guard saw the whole path as one argument and refused it as what it is: no device
    assert f"data disk {device} refused: it is not a block device" in str(exc.value)


def _keypair(where: Path, name: str) -> str:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(where / name)], check=True
    )
    return " ".join((where / f"{name}.pub").read_text().split()[:2])


@pytest.fixture
def keyscan(state, monkeypatch):
    """ssh-keyscan answering with the key in state/offered (the VM's sshd is not here)."""
    bindir = state / "bin"
    bindir.mkdir()
    script = bindir / "ssh-keyscan"
    script.write_text(f'#!/bin/sh\nfor a; do last=$a; done\necho "$last $(cat {state}/offered)"\n')
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    return state / "offered"


def test_vagrant_host_key_pinned_on_first_sight_then_checked(state, keyscan, monkeypatch):
    first, second = _keypair(state, "k1"), _keypair(state, "k2")
    spec = {"name": "secvagrant", "vagrant": {"provider": "libvirt"}, "nodes": []}
    prov = VagrantProvider(spec)
    prov.state = state / "lab"
    prov.state.mkdir()
    keyscan.write_text(first)
    assert prov._host_key("node1", "192.168.56.11", 22) == first
    sshconf.write_known_hosts(prov.state, {"node1": (["node1", "192.168.56.11"], first)})
    assert prov._host_key("node1", "192.168.56.11", 22) == first  # the same VM again
    keyscan.write_text(second)  # another machine answers at that address
    with pytest.raises(ProviderError, match="host key changed"):
        prov._host_key("node1", "192.168.56.11", 22)
    assert sshconf.read_known_hosts(prov.state)["node1"] == [first]
