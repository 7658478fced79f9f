"""clusterlab.cephclient: the nodes' Ceph kernel clients and the CSI mounters chosen from them;
clusterlab.hostkernel.ceph_client_features on this machine's real kernel."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from clusterlab import cephclient, hostkernel

ALL = {"rbd": True, "nbd": True, "ceph": True}
NONE = {"rbd": False, "nbd": False, "ceph": False}


def test_every_node_with_every_client_uses_the_kernel_clients():
    d = cephclient.choose({"n1": ALL, "n2": ALL})
    assert d["rbd_mounter"] == "rbd"
    assert d["rbd_nodes"] == ["n1", "n2"]
    assert d["rbd_unusable"] == []
    assert d["cephfs_mounter"] == "kernel"
    assert d["warnings"] == []


def test_one_node_without_the_ceph_module_makes_cephfs_fuse():
    d = cephclient.choose({"n1": ALL, "n2": {**ALL, "ceph": False}})
    assert d["cephfs_mounter"] == "fuse"
    assert d["cephfs_fuse_nodes"] == ["n2"]
    assert d["rbd_mounter"] == "rbd"


def test_no_client_anywhere_names_every_node():
    d = cephclient.choose({"node2": NONE, "node1": NONE})
    assert d["rbd_mounter"] == "rbd"
    assert d["rbd_unusable"] == ["node1", "node2"]
    assert d["cephfs_mounter"] == "fuse"
    (warning,) = d["warnings"]
    assert warning.startswith("RBD: node1, node2: the kernel has neither the rbd nor the nbd")


def test_nbd_where_more_nodes_have_it_than_rbd():
    d = cephclient.choose(
        {"a": {**NONE, "nbd": True}, "b": {**NONE, "nbd": True}, "c": {**NONE, "rbd": True}}
    )
    assert d["rbd_mounter"] == "rbd-nbd"
    assert d["rbd_nodes"] == ["a", "b"]
    assert d["rbd_unusable"] == ["c"]
    (warning,) = d["warnings"]
    assert "c: the kernel lacks the nbd module" in warning
    assert "(rbd-nbd)" in warning


def test_a_tie_keeps_the_kernel_rbd_client():
    d = cephclient.choose({"a": {**NONE, "nbd": True}, "b": {**NONE, "rbd": True}})
    assert d["rbd_mounter"] == "rbd"
    assert d["rbd_unusable"] == ["a"]
    assert "a: the kernel lacks the rbd module" in d["warnings"][0]


def test_no_nodes_is_an_error():
    with pytest.raises(ValueError, match="no nodes"):
        cephclient.choose({})


@pytest.mark.parametrize("shared", [True, False])
def test_probe_script_runs_and_reports_every_feature(shared):
    res = subprocess.run(
        ["sh", "-c", cephclient.probe_script(shared)],
        capture_output=True,
        text=True,
        check=True,
    )
    lines = res.stdout.splitlines()
    assert [ln.split()[0] for ln in lines] == list(cephclient.FEATURES)
    assert all(ln.split()[1] in ("yes", "no") for ln in lines)


def test_shared_kernel_probe_never_asks_modprobe():
    assert "modprobe" not in cephclient.probe_script(True)
    assert cephclient.probe_script(False).count("modprobe -n -q") == len(cephclient.FEATURES)


def test_own_kernel_probe_finds_modprobe_without_sbin_in_path():
    """The probe runs as the login user: PATH=/usr/local/bin:/usr/bin:/bin (Debian's and RHEL's
    default for users) has no modprobe, so a bare `modprobe -n` fails and a node with a loadable
    ceph module would be counted as lacking it (CephFS falls back to ceph-fuse)."""
    script = cephclient.probe_script(False)
    calls = re.findall(r"(\S*modprobe) -n", script)
    assert calls
    assert set(calls) == {"/sbin/modprobe"}


def test_parse_probe_takes_only_what_it_knows():
    text = "rbd yes\nnbd no\nnoise here\nceph maybe\n"
    assert cephclient.parse_probe(text) == {"rbd": True, "nbd": False, "ceph": False}


def test_host_kernel_features_match_the_kernel_interfaces():
    """The host probe against reading the same kernel interfaces directly."""
    filesystems = Path("/proc/filesystems").read_text().split()
    assert hostkernel.ceph_client_features() == {
        "rbd": Path("/sys/bus/rbd").is_dir(),
        "nbd": Path("/sys/module/nbd").is_dir(),
        "ceph": "ceph" in filesystems,
    }
