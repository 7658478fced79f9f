"""What the redis-ha demo sends to Redis and Sentinel, and how it reads the answers.

Each operation is an `Op`: the command (an argv, run as is by a `Run` function) and the check
of its output. The demo runs every argv inside a pod (`kubectl exec POD -c C -- ARGV`); the
integration test runs the same argv on this machine against real redis-server and
redis-sentinel processes on loopback ports, so the failover and backup/restore logic the
audience sees is the logic that is tested. Commands that must reach "the primary, whoever it
is now" ask Sentinel first in a small sh script (`sh -c`), because a demo's steps are fixed
before the failover picks a new primary.
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass

MASTER = "mymaster"  # the name Sentinel monitors the primary under
DOWN_AFTER_MS = 5000  # unreachable this long: subjectively down
QUORUM = 2  # sentinels that must agree it is down (of three)

Run = Callable[[list[str]], tuple[int, str]]  # argv -> (exit code, stdout + stderr)


@dataclass(frozen=True)
class Addr:
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class Op:
    """One command and what its output must show (check -> None, or the problem)."""

    argv: list[str]
    check: Callable[[str], str | None]
    wait: int = 0  # seconds to retry until the check passes


def sentinel_conf(master: str, master_port: int | str, *, port: int = 26379) -> str:
    """Sentinel's configuration (the pods write it with shell variables as arguments)."""
    return "\n".join(
        [
            f"port {port}",
            "sentinel resolve-hostnames yes",
            "sentinel announce-hostnames yes",
            f"sentinel monitor {MASTER} {master} {master_port} {QUORUM}",
            f"sentinel down-after-milliseconds {MASTER} {DOWN_AFTER_MS}",
            f"sentinel failover-timeout {MASTER} 30000",
            f"sentinel parallel-syncs {MASTER} 1",
            "",
        ]
    )


def cli(addr: Addr, *args: str) -> list[str]:
    return ["redis-cli", "-h", addr.host, "-p", str(addr.port), "--raw", *args]


def _primary_prefix(sentinel: Addr, echo: bool) -> str:
    """sh: set $1 $2 to the primary's host and port as Sentinel names them (exit 3 if none)."""
    ask = shlex.join(cli(sentinel, "SENTINEL", "get-master-addr-by-name", MASTER))
    script = f'set -- $({ask}) && [ -n "$2" ] || exit 3; '
    return script + ('echo "primary $1:$2"; ' if echo else "")


def _to_primary(*args: str) -> str:
    return 'redis-cli -h "$1" -p "$2" --raw ' + shlex.join(args)


def _on_primary(sentinel: Addr, *args: str, echo: bool = False) -> list[str]:
    """sh -c: ask Sentinel for the primary's address, then run redis-cli against it."""
    return ["sh", "-c", _primary_prefix(sentinel, echo) + _to_primary(*args)]


# ---------------------------------------------------------------- parsers


def parse_info(text: str) -> dict[str, str]:
    """INFO's `key:value` lines (sections and blank lines skipped)."""
    out = {}
    for raw in text.splitlines():
        line = raw.strip()
        if line and not line.startswith("#") and ":" in line:
            key, value = line.split(":", 1)
            out[key] = value
    return out


def parse_addr(text: str) -> Addr | None:
    """SENTINEL get-master-addr-by-name with --raw: host and port on two lines."""
    lines = [x.strip() for x in text.splitlines() if x.strip()]
    if len(lines) != 2 or not lines[1].isdigit():
        return None
    return Addr(lines[0], int(lines[1]))


def _lines(text: str) -> list[str]:
    return [x.rstrip("\r") for x in text.splitlines()]


def _values_problem(text: str, keys: dict[str, str], skip: int = 0) -> str | None:
    got = _lines(text)[skip:]
    want = list(keys.values())
    if got[: len(want)] != want:
        return f"expected {dict(keys)}, read {dict(zip(keys, got, strict=False))}"
    return None


# ---------------------------------------------------------------- the failover


def write_keys(sentinel: Addr, keys: dict[str, str], replicas: int) -> Op:
    """MSET on the primary, then WAIT until every replica has acknowledged the write (a key
    that never reached a replica is lost by design when the primary dies)."""
    pairs = [x for kv in keys.items() for x in kv]
    script = _primary_prefix(sentinel, False) + _to_primary("MSET", *pairs)
    argv = ["sh", "-c", script + " && " + _to_primary("WAIT", str(replicas), "10000")]

    def check(out: str) -> str | None:
        lines = [x for x in _lines(out) if x]
        if not lines or lines[0] != "OK":
            return f"MSET did not answer OK: {out.strip()!r}"
        acked = lines[-1]
        if not acked.isdigit() or int(acked) < replicas:
            return f"only {acked} of {replicas} replicas acknowledged the write"
        return None

    return Op(argv, check)


def read_keys(sentinel: Addr, keys: dict[str, str]) -> Op:
    """MGET on the current primary: every key still holds its value."""
    return Op(_on_primary(sentinel, "MGET", *keys), lambda out: _values_problem(out, keys))


def primary(sentinel: Addr) -> Op:
    """Who Sentinel says the primary is."""

    def check(out: str) -> str | None:
        return None if parse_addr(out) else f"Sentinel named no primary: {out.strip()!r}"

    return Op(cli(sentinel, "SENTINEL", "get-master-addr-by-name", MASTER), check)


def promoted(sentinel: Addr, old: Addr, wait: int = 120) -> Op:
    """Sentinel names another primary than `old`, and that server says it is a master."""
    argv = _on_primary(sentinel, "ROLE", echo=True)

    def check(out: str) -> str | None:
        lines = [x for x in _lines(out) if x]
        if not lines or not lines[0].startswith("primary "):
            return f"Sentinel named no primary: {out.strip()!r}"
        now = lines[0].removeprefix("primary ")
        if now == str(old):
            return f"Sentinel still names {old} as the primary"
        if len(lines) < 2 or lines[1] != "master":
            return f"{now} is not a master yet (ROLE: {lines[1:2]})"
        return None

    return Op(argv, check, wait)


# ---------------------------------------------------------------- backup and restore


def bgsave(sentinel: Addr) -> Op:
    """BGSAVE on the primary: a snapshot (dump.rdb) in its data directory."""

    def check(out: str) -> str | None:
        ok = "Background saving started" in out or "already in progress" in out
        return None if ok else f"BGSAVE did not start: {out.strip()!r}"

    return Op(_on_primary(sentinel, "BGSAVE"), check)


def bgsave_done(sentinel: Addr, wait: int = 60) -> Op:
    """INFO persistence until no save runs and the last one succeeded."""

    def check(out: str) -> str | None:
        info = parse_info(out)
        if info.get("rdb_bgsave_in_progress") != "0":
            return f"a save is still running (rdb_bgsave_in_progress:{info.get('rdb_bgsave_in_progress')})"
        if info.get("rdb_last_bgsave_status") != "ok":
            return f"the last save failed (rdb_last_bgsave_status:{info.get('rdb_last_bgsave_status')})"
        return None

    return Op(_on_primary(sentinel, "INFO", "persistence"), check, wait)


def data_dir(sentinel: Addr) -> Op:
    """CONFIG GET dir: where the primary keeps dump.rdb (its volume)."""

    def check(out: str) -> str | None:
        lines = [x for x in _lines(out) if x]
        ok = len(lines) == 2 and lines[0] == "dir" and lines[1].startswith("/")
        return None if ok else f"CONFIG GET dir gave {out.strip()!r}"

    return Op(_on_primary(sentinel, "CONFIG", "GET", "dir"), check)


def backup(sentinel: Addr, file: str) -> Op:
    """redis-cli --rdb FILE: the primary streams a fresh RDB snapshot into FILE (run where
    FILE is on the backup volume)."""

    def check(out: str) -> str | None:
        ok = "Transfer finished with success" in out
        return None if ok else f"the RDB transfer did not finish: {out.strip()[-300:]!r}"

    return Op(_on_primary(sentinel, "--rdb", file), check)


def check_rdb(file: str, keys: int) -> Op:
    """redis-check-rdb FILE: the backup is a sound RDB file holding at least `keys` keys."""

    def check(out: str) -> str | None:
        if "RDB looks OK" not in out:
            return f"{file} is not a sound RDB file: {out.strip()[-300:]!r}"
        for line in _lines(out):
            if "keys read" in line:
                n = int(line.split("]")[-1].split()[0])
                return None if n >= keys else f"{file} holds {n} keys, expected {keys}"
        return f"redis-check-rdb did not count the keys: {out.strip()[-300:]!r}"

    return Op(["redis-check-rdb", file], check)


def forget_keys(sentinel: Addr, keys: dict[str, str]) -> Op:
    """DEL the keys on the primary (the loss the backup is for)."""

    def check(out: str) -> str | None:
        last = [x for x in _lines(out) if x][-1:] or [""]
        ok = last[0].isdigit() and int(last[0]) == len(keys)
        return None if ok else f"DEL removed {last[0]!r} of {len(keys)} keys"

    return Op(_on_primary(sentinel, "DEL", *keys), check)


def restore(file: str, directory: str, port: int) -> Op:
    """A fresh server from the backup: stop (a previous restore server), place dump.rdb in
    an empty data directory, AOF off (an AOF would win over the RDB), start, answer PING."""
    dump = f"{directory}/dump.rdb"
    script = "; ".join(
        [
            f"redis-cli -p {port} SHUTDOWN NOSAVE >/dev/null 2>&1",
            f"mkdir -p {shlex.quote(directory)}",
            f"cp {shlex.quote(file)} {shlex.quote(dump)} || exit 4",
            shlex.join(
                [
                    "redis-server",
                    "--bind",
                    "127.0.0.1",
                    "--port",
                    str(port),
                    "--dir",
                    directory,
                    "--dbfilename",
                    "dump.rdb",
                    "--appendonly",
                    "no",
                    "--save",
                    "",
                    "--pidfile",
                    f"{directory}/redis.pid",
                    "--logfile",
                    f"{directory}/redis.log",
                    "--daemonize",
                    "yes",
                ]
            )
            + " || exit 5",
            "i=0; until redis-cli -p " + str(port) + " PING 2>/dev/null | grep -q PONG; do "
            "i=$((i+1)); [ $i -gt 50 ] && exit 6; sleep 0.2; done",
            "echo restored",
        ]
    )

    def check(out: str) -> str | None:
        return None if "restored" in _lines(out) else f"the restore failed: {out.strip()!r}"

    return Op(["sh", "-c", script], check)


def restored_keys(port: int, keys: dict[str, str]) -> Op:
    """MGET on the restored server: the keys are back."""
    argv = ["redis-cli", "-p", str(port), "--raw", "MGET", *keys]
    return Op(argv, lambda out: _values_problem(out, keys))


# ---------------------------------------------------------------- running ops here


def perform(op: Op, run: Run, *, interval: float = 1.0) -> str:
    """Run op until its check passes (or op.wait runs out); its output, or ValueError with the
    last problem."""
    deadline = time.monotonic() + op.wait
    while True:
        rc, out = run(op.argv)
        problem = op.check(out) if rc == 0 else f"exit {rc}: {out.strip()[-300:]!r}"
        if problem is None:
            return out
        if time.monotonic() >= deadline:
            raise ValueError(problem)
        time.sleep(interval)
