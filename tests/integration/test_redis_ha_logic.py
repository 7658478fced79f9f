"""The redis-ha demo's failover and backup/restore logic (clusterlab.demos.redisops) against
real Redis and Sentinel processes from Debian's redis-server / redis-sentinel packages.

A primary, two replicas and three sentinels listen on loopback ports in a temp directory; the
demo's own commands (the argv it sends inside pods) run here unchanged, and its checks read
their real output. Every process started is killed in `finally`.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from clusterlab.demos import redisops
from clusterlab.demos.redisops import Addr

pytestmark = pytest.mark.integration

TOOLS = ("redis-server", "redis-sentinel", "redis-cli", "redis-check-rdb")
MISSING = [t for t in TOOLS if not shutil.which(t)]
PR_SET_CHILD_SUBREAPER = 36
KEYS = {"talk": "kubernetes-storage", "city": "meetup", "answer": "42"}


def free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def run(argv: list[str]) -> tuple[int, str]:
    res = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    return res.returncode, res.stdout + res.stderr


def wait_ping(port: int, proc: subprocess.Popen) -> None:
    for _ in range(100):
        if proc.poll() is not None:
            raise AssertionError(f"the server on port {port} exited with {proc.returncode}")
        if run(["redis-cli", "-p", str(port), "PING"])[1].strip() == "PONG":
            return
        time.sleep(0.1)
    raise AssertionError(f"no PONG on port {port}")


@contextlib.contextmanager
def subreaper():
    """Orphans (the daemonized restore server, a killed server's save child) become our
    children instead of PID 1's, and are reaped here at the end."""
    libc = ctypes.CDLL(None, use_errno=True)
    assert libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    try:
        yield
    finally:
        libc.prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                time.sleep(0.05)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=10)


@pytest.mark.skipif(
    bool(MISSING),
    reason=f"needs {', '.join(MISSING)} (apt-get install redis-server redis-tools redis-sentinel)",
)
def test_failover_then_backup_and_restore_with_the_demos_commands(tmp_path: Path):
    p0, p1, p2, s0, s1, s2, restore_port = free_ports(7)
    procs: dict[str, subprocess.Popen] = {}
    restore_dir = tmp_path / "restore"
    with subreaper():
        run_scenario(tmp_path, procs, restore_dir, (p0, p1, p2, s0, s1, s2, restore_port))
    assert run(["redis-cli", "-p", str(restore_port), "PING"])[1].strip() != "PONG"


def run_scenario(tmp_path: Path, procs: dict, restore_dir: Path, ports: tuple) -> None:
    p0, p1, p2, s0, s1, s2, restore_port = ports
    try:
        for name, port, extra in (
            ("redis-0", p0, []),
            ("redis-1", p1, ["--replicaof", "127.0.0.1", str(p0)]),
            ("redis-2", p2, ["--replicaof", "127.0.0.1", str(p0)]),
        ):
            d = tmp_path / name
            d.mkdir()
            argv = ["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--dir", str(d)]
            argv += ["--appendonly", "no", "--daemonize", "no", "--logfile", str(d / "log")]
            procs[name] = subprocess.Popen([*argv, *extra], stdout=subprocess.DEVNULL)
            wait_ping(port, procs[name])
        for i, port in enumerate((s0, s1, s2)):
            conf = tmp_path / f"sentinel-{i}.conf"
            conf.write_text(
                redisops.sentinel_conf("127.0.0.1", p0, port=port)
                + f"bind 127.0.0.1\nlogfile {tmp_path / f'sentinel-{i}.log'}\n"
            )
            procs[f"sentinel-{i}"] = subprocess.Popen(
                ["redis-sentinel", str(conf)], stdout=subprocess.DEVNULL
            )
            wait_ping(port, procs[f"sentinel-{i}"])
        sentinel = Addr("127.0.0.1", s1)

        # the primary as Sentinel names it; keys written and acknowledged by both replicas
        out = redisops.perform(redisops.primary(sentinel), run)
        assert redisops.parse_addr(out) == Addr("127.0.0.1", p0)
        redisops.perform(redisops.write_keys(sentinel, KEYS, replicas=2), run)
        redisops.perform(redisops.read_keys(sentinel, KEYS), run)

        # kill the primary: Sentinel promotes a replica, the keys are still there
        procs["redis-0"].send_signal(signal.SIGKILL)
        procs["redis-0"].wait(timeout=10)
        started = time.monotonic()
        out = redisops.perform(redisops.promoted(sentinel, Addr("127.0.0.1", p0), wait=30), run)
        took = time.monotonic() - started
        assert out.splitlines()[0] in (f"primary 127.0.0.1:{p1}", f"primary 127.0.0.1:{p2}")
        assert took >= redisops.DOWN_AFTER_MS / 1000 - 1  # not before it could be "down"
        redisops.perform(redisops.read_keys(sentinel, KEYS), run)
        # the check fails while the old primary is still named (the same op, old = new)
        new = Addr("127.0.0.1", int(out.splitlines()[0].rsplit(":", 1)[1]))
        with pytest.raises(ValueError, match="still names"):
            redisops.perform(redisops.promoted(sentinel, new, wait=0), run)

        # backup: BGSAVE on the new primary, its data dir, then an RDB copy on another volume
        redisops.perform(redisops.bgsave(sentinel), run)
        redisops.perform(redisops.bgsave_done(sentinel, wait=20), run, interval=0.2)
        out = redisops.perform(redisops.data_dir(sentinel), run)
        assert (Path(out.split()[1]) / "dump.rdb").is_file()
        backup_file = tmp_path / "backup" / "dump.rdb"
        backup_file.parent.mkdir()
        redisops.perform(redisops.backup(sentinel, str(backup_file)), run)
        redisops.perform(redisops.check_rdb(str(backup_file), len(KEYS)), run)
        with pytest.raises(ValueError, match="holds 3 keys"):
            redisops.perform(redisops.check_rdb(str(backup_file), len(KEYS) + 1), run)

        # the keys are lost on the primary, then a fresh server restored from the backup has them
        redisops.perform(redisops.forget_keys(sentinel, KEYS), run)
        with pytest.raises(ValueError, match="expected"):
            redisops.perform(redisops.read_keys(sentinel, KEYS), run)
        redisops.perform(redisops.restore(str(backup_file), str(restore_dir), restore_port), run)
        redisops.perform(redisops.restored_keys(restore_port, KEYS), run)
    finally:
        for proc in procs.values():
            stop(proc)
        pidfile = restore_dir / "redis.pid"
        if pidfile.is_file():  # the restore server daemonizes, as in the pod
            with contextlib.suppress(ProcessLookupError, ValueError):
                pid = int(pidfile.read_text().strip())
                os.kill(pid, signal.SIGKILL)
