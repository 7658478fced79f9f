"""SSH control sockets and Ansible's local temp live in a private runtime directory.

Whoever creates the control socket (or its directory) first receives root's commands and the
sudo password sent through it. A directory of another user, one open to others (0777) or a
symbolic link is refused with its name, and nothing is written into it.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml

from clusterlab import ansible, paths, sshconf

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


def test_parent_readable_by_others_is_fine(tmp_path, monkeypatch):
    """As /run/clusterlab, which the local provider makes 0755 for its host locks."""
    parent = tmp_path / "shared"
    parent.mkdir()
    parent.chmod(0o755)  # what is tested
    monkeypatch.setenv(sshconf.RUNTIME_ENV, str(parent / "0"))
    assert sshconf.runtime_dir() == parent / "0"
    assert stat.S_IMODE(os.lstat(parent / "0").st_mode) == 0o700


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
    """/run/clusterlab/0: its parent may be 0755 (the local provider's host locks live there)."""
    monkeypatch.delenv(sshconf.RUNTIME_ENV, raising=False)
    monkeypatch.setenv("XDG_RUNTIME_DIR", "/tmp")  # never used for root
    assert sshconf.default_runtime_dir() == Path("/run/clusterlab/0")


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


# ------------------------------------------------------------------ secrets on the controller
PLAY = """\
- hosts: localhost
  gather_facts: false
  tasks:
    - name: say something
      ansible.builtin.debug:
        msg: hello
"""


def test_stage_log_and_events_are_private(tmp_path, runtime_env):
    play = tmp_path / "play.yml"
    play.write_text(PLAY)
    log = tmp_path / "logs" / "stage.log"
    log.parent.mkdir()
    log.write_text("an older run\n")
    log.chmod(0o644)  # as earlier versions left it
    ansible.run_playbook(play, Path("localhost,"), log, extra_args=["-c", "local"])
    assert stat.S_IMODE(os.lstat(log).st_mode) == 0o600
    assert log.read_text().startswith("an older run\n")
    events = tmp_path / "logs" / "stage.events.jsonl"
    res = subprocess.run(
        [ansible.bin_path("ansible-playbook"), "-i", "localhost,", "-c", "local", str(play)],
        env={**ansible.env(), **ansible.events_env(events)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert stat.S_IMODE(os.lstat(events).st_mode) == 0o600
    assert '"event"' in events.read_text()


def _tasks(path: Path) -> list[dict]:
    out = []
    todo = list(yaml.safe_load(path.read_text()) or [])
    while todo:
        task = todo.pop()
        out.append(task)
        for key in ("block", "rescue", "always"):
            todo += task.get(key, [])
    return out


def test_bootstrap_token_tasks_are_not_logged():
    """A task whose output is a join token (kubeadm token generate/create) has no_log."""
    found = []
    for path in (paths.ROOT / "roles" / "kubernetes").rglob("tasks/*.yml"):
        for task in _tasks(path):
            command = task.get("ansible.builtin.command") or task.get("ansible.builtin.shell")
            text = json.dumps(command) if command else ""
            if "kubeadm token" in text or "certificate-key" in text or "upload-certs" in text:
                found.append(task["name"])
                assert task.get("no_log") is True, f"{path}: {task['name']!r} logs its secret"
    assert len(found) >= 2, found


def test_non_root_user_gets_a_private_dir_under_home(tmp_path):
    """As another user (nobody, HOME in a directory of its own, no XDG_RUNTIME_DIR): the
    runtime dir is ~/.ansible/clusterlab-run, 0700, even where ~/.ansible is 0755."""
    if os.geteuid() != 0:
        pytest.skip("switching users needs root")
    home = tmp_path / "home"
    (home / ".ansible").mkdir(parents=True)
    (home / ".ansible").chmod(0o755)
    tmp_path.chmod(0o755)  # nobody must reach its home
    os.chown(home, NOBODY, NOBODY)
    os.chown(home / ".ansible", NOBODY, NOBODY)
    code = "from clusterlab import sshconf; print(sshconf.runtime_dir())"
    env = {k: v for k, v in os.environ.items() if k not in (sshconf.RUNTIME_ENV, "XDG_RUNTIME_DIR")}
    res = subprocess.run(
        [
            "setpriv",
            f"--reuid={NOBODY}",
            f"--regid={NOBODY}",
            "--clear-groups",
            sys.executable,
            "-c",
            code,
        ],
        capture_output=True,
        text=True,
        env={**env, "HOME": str(home), "PYTHONPATH": str(paths.ROOT / "src")},
        check=False,
    )
    assert res.returncode == 0, res.stderr
    got = Path(res.stdout.strip())
    assert got == home / ".ansible" / "clusterlab-run"
    st = os.lstat(got)
    assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (NOBODY, 0o700)
