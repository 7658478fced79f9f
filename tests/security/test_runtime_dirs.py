"""SSH control sockets and Ansible's local temp live in a private runtime directory.

Whoever creates the control socket (or its directory) first receives root's commands and the
sudo password sent through it. A directory of another user, one open to others (0777) or a
symbolic link is refused with its name, and nothing is written into it.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from clusterlab import ansible, sshconf

NOBODY = 65534


@pytest.fixture
def tmp_path():
    """A short private directory (pytest's tmp_path is too long for socket paths)."""
    path = Path(tempfile.mkdtemp(prefix="clsec-"))
    yield path
    shutil.rmtree(path)


@pytest.fixture
def runtime_env(tmp_path, monkeypatch):
    """CLUSTERLAB_RUNTIME_DIR pointing at tmp_path/rt (not created)."""
    path = tmp_path / "rt"
    monkeypatch.setenv(sshconf.RUNTIME_ENV, str(path))
    return path


def _refused(path: Path) -> str:
    with pytest.raises(sshconf.RuntimeDirError) as exc:
        sshconf.runtime_dir()
    assert str(path) in str(exc.value)
    return str(exc.value)


def test_fresh_runtime_dir_is_made_private(runtime_env):
    got = sshconf.runtime_dir()
    assert got == runtime_env
    st = os.lstat(got)
    assert stat.S_IMODE(st.st_mode) == 0o700
    assert st.st_uid == os.geteuid()
    assert stat.S_IMODE(os.lstat(got / "ansible-cp").st_mode) == 0o700
    env = ansible.env()
    assert env["ANSIBLE_SSH_CONTROL_PATH_DIR"] == str(got / "ansible-cp")
    assert Path(env["ANSIBLE_LOCAL_TEMP"]).parent == got
    assert stat.S_IMODE(os.lstat(env["ANSIBLE_LOCAL_TEMP"]).st_mode) == 0o700


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another uid needs root")
def test_directory_of_another_user_is_refused(runtime_env):
    runtime_env.mkdir(mode=0o700)
    os.chown(runtime_env, NOBODY, NOBODY)
    msg = _refused(runtime_env)
    assert f"owned by uid {NOBODY}" in msg
    assert os.lstat(runtime_env).st_uid == NOBODY  # not taken over: left as it was
    assert list(runtime_env.iterdir()) == []
    with pytest.raises(sshconf.RuntimeDirError):
        ansible.env()


def test_world_writable_directory_is_refused(runtime_env):
    runtime_env.mkdir()
    runtime_env.chmod(0o777)
    assert "mode 0777" in _refused(runtime_env)
    assert stat.S_IMODE(os.lstat(runtime_env).st_mode) == 0o777
    assert list(runtime_env.iterdir()) == []


def test_group_readable_directory_is_refused(runtime_env):
    runtime_env.mkdir()
    runtime_env.chmod(0o750)
    assert "mode 0750" in _refused(runtime_env)


def test_symlink_is_refused_even_to_a_private_dir(runtime_env, tmp_path):
    target = tmp_path / "mine"
    target.mkdir(mode=0o700)
    runtime_env.symlink_to(target)
    assert "symbolic link" in _refused(runtime_env)
    assert list(target.iterdir()) == []


def test_writable_parent_is_refused(tmp_path, monkeypatch):
    parent = tmp_path / "open"
    parent.mkdir()
    parent.chmod(0o777)  # others could rename our directory away and put theirs in its place
    monkeypatch.setenv(sshconf.RUNTIME_ENV, str(parent / "rt"))
    assert "writable by others" in _refused(parent / "rt")
    assert not (parent / "rt").exists()


def test_path_too_long_for_a_socket_is_refused(tmp_path, monkeypatch):
    long = tmp_path / ("x" * 80)
    monkeypatch.setenv(sshconf.RUNTIME_ENV, str(long))
    assert "too long" in _refused(long)
    assert not long.exists()


def test_ssh_config_control_path_is_private_and_fits_sun_path(runtime_env, tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    sshconf.write_ssh_config(state, [sshconf.SshHost("node1", "10.9.0.11", "root")], None)
    res = subprocess.run(
        ["ssh", "-F", str(state / "ssh_config"), "-G", "node1"],
        capture_output=True,
        text=True,
        check=True,
    )
    control = next(
        line.split(" ", 1)[1] for line in res.stdout.splitlines() if line.startswith("controlpath ")
    )
    assert Path(control).parent == runtime_env
    assert len(control.encode()) < 108
    for line in (state / "ssh_config").read_text().splitlines():
        assert "/tmp/" not in line or str(tmp_path) in line


def test_ssh_config_is_not_written_with_a_refused_runtime_dir(runtime_env, tmp_path):
    runtime_env.mkdir()
    runtime_env.chmod(0o777)
    state = tmp_path / "state"
    state.mkdir()
    with pytest.raises(sshconf.RuntimeDirError):
        sshconf.write_ssh_config(state, [sshconf.SshHost("node1", "10.9.0.11", "root")], None)
    assert not (state / "ssh_config").exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="root's runtime directory")
def test_root_default_is_under_run(monkeypatch):
    monkeypatch.delenv(sshconf.RUNTIME_ENV, raising=False)
    monkeypatch.setenv("XDG_RUNTIME_DIR", "/tmp")  # never used for root
    assert sshconf.default_runtime_dir() == Path("/run/clusterlab")


def test_command_line_refuses_before_running_ansible(tmp_path):
    """`clusterlab manifests` runs Ansible locally: with a 0777 runtime dir it stops, names
    the directory, exits 1 and writes no manifest."""
    bad = tmp_path / "rt"
    bad.mkdir()
    bad.chmod(0o777)
    out = tmp_path / "out"
    res = subprocess.run(
        [sys.executable, "-m", "clusterlab", "manifests", "--lab", "default", "--out", str(out)],
        capture_output=True,
        text=True,
        env=dict(os.environ, **{sshconf.RUNTIME_ENV: str(bad)}),
        check=False,
    )
    assert res.returncode == 1, res.stdout + res.stderr
    assert f"refusing the runtime directory {bad}" in res.stderr
    assert not out.exists() or not any(out.rglob("*.yaml"))
    assert list(bad.iterdir()) == []
