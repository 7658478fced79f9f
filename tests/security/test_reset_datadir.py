"""`reset` removes only what Rook makes in rook.data_dir_host_path — <dir>/<namespace>, the
mon-* stores, exporter/ (Rook's own host cleanup: pkg/daemon/ceph/cleanup/host.go,
StartHostPathCleanup) — then the directory itself only when nothing else is in it. It used
to delete the whole path recursively, whatever the spec named (`/` included).

The role runs for real on this machine (ansible_connection local) on a scratch directory,
with no data disks (lab_disks: [])."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from clusterlab import ansible

PLAY = """\
- hosts: all
  gather_facts: false
  roles:
    - role: disk_reset
"""


def run_reset(tmp_path, data_dir: str) -> subprocess.CompletedProcess:
    inv = tmp_path / "inv.yml"
    inv.write_text("all:\n  hosts:\n    node:\n      ansible_connection: local\n")
    play = tmp_path / "reset.yml"
    play.write_text(PLAY)
    extra = {
        "ansible_python_interpreter": sys.executable,
        "lab_disks": [],
        "disk_tool_path": str(tmp_path / "clusterlab-disk"),
        "rook_data_dir_host_path": data_dir,
    }
    try:
        return subprocess.run(
            [
                ansible.bin_path("ansible-playbook"),
                "-i",
                str(inv),
                str(play),
                "-e",
                json.dumps(extra),
            ],
            env=ansible.env(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            check=False,
            timeout=300,
        )
    finally:
        play.unlink()


def rook_dir(root):
    d = root / "rook"
    (d / "rook-ceph" / "crash").mkdir(parents=True)
    (d / "rook-ceph" / "client.admin.keyring").write_text("k")
    (d / "mon-a" / "data").mkdir(parents=True)
    (d / "mon-b").mkdir()
    (d / "exporter").mkdir()
    (d / "exporter" / "sock").write_text("")
    return d


def test_only_rooks_entries_go_and_the_rest_stays(tmp_path):
    d = rook_dir(tmp_path)
    (d / "notes.txt").write_text("mine")
    (d / "monitor-config").mkdir()  # not mon-*
    res = run_reset(tmp_path, str(d))
    assert res.returncode == 0, res.stdout + res.stderr
    assert sorted(p.name for p in d.iterdir()) == ["monitor-config", "notes.txt"]


def test_the_directory_goes_when_rook_left_nothing_else(tmp_path):
    d = rook_dir(tmp_path)
    res = run_reset(tmp_path, str(d))
    assert res.returncode == 0, res.stdout + res.stderr
    assert not d.exists()
    assert tmp_path.is_dir()


def test_a_missing_directory_is_fine(tmp_path):
    res = run_reset(tmp_path, str(tmp_path / "never-made"))
    assert res.returncode == 0, res.stdout + res.stderr


@pytest.mark.parametrize("data_dir", ["/", "/etc", "/var/lib", "/var/../etc", "/rook"])
def test_a_system_directory_is_refused_on_the_node_too(tmp_path, data_dir):
    """The spec refuses these first; an inventory that carries one anyway stops the role
    before it removes anything."""
    res = run_reset(tmp_path, data_dir)
    assert res.returncode != 0
    assert "is not a directory of" in res.stdout
