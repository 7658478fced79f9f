"""The lab's SSH material: key pair, known_hosts, ssh_config; the private runtime directory.

SSH control sockets (the lab's ssh_config and Ansible's control_path_dir) and Ansible's
local temp live in a directory of the running user with mode 0700 (runtime_dir): whoever
can create a control socket first receives the commands, and the sudo password, sent
through it (ssh -o ControlMaster=auto connects to an existing socket without asking).
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

from clusterlab.providers.base import ProviderError

RUNTIME_ENV = "CLUSTERLAB_RUNTIME_DIR"
# sun_path holds 108 bytes with its NUL; the longest name we put in the runtime dir is
# "ansible-cp/" + ssh's %C (40 hex digits, a SHA1).
SUN_PATH_MAX = 107
LONGEST_SOCKET_NAME = len("/ansible-cp/") + 40


class RuntimeDirError(ProviderError):
    """The private runtime directory cannot be used; the message names it and says why."""


class SshConfigError(ProviderError):
    """A value would not stay one ssh_config / known_hosts word; nothing was written."""


def _why_not_private(path: Path, st: os.stat_result) -> str | None:
    if stat.S_ISLNK(st.st_mode):
        return "is a symbolic link"
    if not stat.S_ISDIR(st.st_mode):
        return "is not a directory"
    if st.st_uid != os.geteuid():
        return f"is owned by uid {st.st_uid}, not by uid {os.geteuid()} (who runs clusterlab)"
    if st.st_mode & 0o077:
        return f"has mode {stat.S_IMODE(st.st_mode):04o}, not 0700"
    return None


def _parent_safe(parent: Path) -> str | None:
    """Why others could replace an entry of `parent`, or None (ours or root's, not writable
    by group or others, or sticky like /tmp)."""
    try:
        st = os.stat(parent)
    except OSError as exc:
        return f"its parent {parent} cannot be read: {exc.strerror}"
    if st.st_uid not in (0, os.geteuid()):
        return f"its parent {parent} is owned by uid {st.st_uid}"
    if st.st_mode & 0o022 and not st.st_mode & stat.S_ISVTX:
        return f"its parent {parent} is writable by others (mode {stat.S_IMODE(st.st_mode):04o})"
    return None


def ensure_private_dir(path: Path) -> Path:
    """Create `path` with mode 0700, or accept it when it exists as a directory (not a link)
    of the running user with no access for group and others; else RuntimeDirError."""
    path = Path(path)
    why = _parent_safe(path.parent)
    if why is None:
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            pass
        except OSError as exc:
            why = f"cannot be created: {exc.strerror}"
    if why is None:
        why = _why_not_private(path, os.lstat(path))
    if why:
        raise RuntimeDirError(
            f"refusing the runtime directory {path}: it {why}. clusterlab keeps SSH control "
            "sockets and Ansible's temporary files there and uses only a directory of its own "
            "user with mode 0700 (another user's could take over the lab's SSH sessions). "
            f"Check who made it and remove it, or set {RUNTIME_ENV} to another path"
        )
    return path


def default_runtime_dir() -> Path:
    """/run/clusterlab/0 for root (/run/clusterlab itself is shared with the local provider's
    host locks, made 0755); else $XDG_RUNTIME_DIR/clusterlab when that directory is the
    user's own (0700, as systemd-logind makes it); else ~/.ansible/clusterlab-run."""
    if os.geteuid() == 0:
        base = Path("/run/clusterlab")
        base.mkdir(mode=0o755, exist_ok=True)
        return base / str(os.geteuid())
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg and Path(xdg).is_absolute():
        try:
            if _why_not_private(Path(xdg), os.lstat(xdg)) is None:
                return Path(xdg) / "clusterlab"
        except OSError:
            pass
    home = Path.home() / ".ansible"  # may be 0755 (Ansible makes it so): only its child is ours
    home.mkdir(mode=0o700, exist_ok=True)
    return home / "clusterlab-run"


def runtime_dir() -> Path:
    """The running user's private runtime directory ($CLUSTERLAB_RUNTIME_DIR, else
    default_runtime_dir()), created and checked now, with its ansible-cp/ subdirectory."""
    chosen = os.environ.get(RUNTIME_ENV)
    path = Path(chosen) if chosen else default_runtime_dir()
    if not path.is_absolute():
        raise RuntimeDirError(f"{RUNTIME_ENV}={chosen!r}: the runtime directory must be absolute")
    path = Path(os.path.normpath(path))
    if len(os.fsencode(path)) + LONGEST_SOCKET_NAME > SUN_PATH_MAX:
        raise RuntimeDirError(
            f"the runtime directory {path} is too long for SSH control sockets (at most "
            f"{SUN_PATH_MAX - LONGEST_SOCKET_NAME} bytes); set {RUNTIME_ENV} to a shorter path"
        )
    ensure_private_dir(path)
    ensure_private_dir(path / "ansible-cp")
    return path


def ssh_control_path() -> str:
    """The ControlPath of every lab's ssh_config (ssh expands %C to a hash of the connection)."""
    return f"{runtime_dir()}/ssh-%C"


def ansible_control_path_dir() -> str:
    """Ansible's control_path_dir (ANSIBLE_SSH_CONTROL_PATH_DIR in ansible.env())."""
    return str(runtime_dir() / "ansible-cp")


def ansible_local_temp() -> str:
    """Ansible's local temp (ANSIBLE_LOCAL_TEMP in ansible.env())."""
    return str(ensure_private_dir(runtime_dir() / "ansible-tmp"))


# One word of ssh_config and known_hosts: no whitespace, control characters (a newline starts
# a new option: `ProxyCommand` runs a command), quotes, backslash, or comment/pattern
# characters. The spec's grammar is stricter; this is the writer's own defence.
_WORD = re.compile(r"[^\s\x00-\x1f\x7f\"'\\#]+")
_HOST_WORD = re.compile(r"[A-Za-z0-9._:\-\[\]]+")
_KEY_TYPE = re.compile(r"(ssh|ecdsa|sk)-[a-z0-9@.\-]+")
_KEY_BLOB = re.compile(r"[A-Za-z0-9+/]+={0,2}")


def _word(what: str, value: object, pattern: re.Pattern = _WORD) -> str:
    text = str(value)
    if not pattern.fullmatch(text):
        raise SshConfigError(
            f"{what} {text!r} cannot be written to the lab's ssh_config: it must be one word "
            "without spaces, control characters, quotes, backslashes or '#'"
        )
    return text


@dataclass
class SshHost:
    name: str
    address: str
    user: str
    port: int = 22
    key_file: str | None = None


def ensure_keypair(state: Path) -> Path:
    key = state / "id_ed25519"
    if not key.exists():
        for stale in (key, key.with_suffix(".pub")):
            stale.unlink(missing_ok=True)
        subprocess.run(
            [
                "ssh-keygen",
                "-q",
                "-t",
                "ed25519",
                "-N",
                "",
                "-C",
                f"clusterlab@{state.name}",
                "-f",
                str(key),
            ],
            check=True,
        )
    key.chmod(0o600)
    return key


def known_hosts_line(names: list[str], pubkey: str) -> str:
    """'name,[addr]:port type base64', each part checked (a newline or a second key would
    add a line: another host's key, or `@cert-authority *`)."""
    fields = pubkey.split()
    if len(fields) < 2 or re.search(r"[\x00-\x1f\x7f\u2028\u2029\x85]", pubkey):
        raise SshConfigError(f"host key {pubkey!r} is not 'type base64'")
    key_type = _word("host key type", fields[0], _KEY_TYPE)
    blob = _word("host key", fields[1], _KEY_BLOB)
    if not names:
        raise SshConfigError("a known_hosts line needs at least one name")
    for n in names:
        _word("known_hosts name", n, _HOST_WORD)
    return f"{','.join(names)} {key_type} {blob}"


def read_known_hosts(state: Path) -> dict[str, list[str]]:
    """The lab's known_hosts: name or address -> ['type base64', ...]."""
    path = state / "known_hosts"
    known: dict[str, list[str]] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            fields = line.split()
            if len(fields) >= 3:
                for name in fields[0].split(","):
                    known.setdefault(name, []).append(f"{fields[1]} {fields[2]}")
    return known


def write_known_hosts(state: Path, entries: dict[str, tuple[list[str], str]]) -> Path:
    """entries: node -> ([names/addresses], 'ssh-ed25519 AAAA...'). Replaces the file;
    nothing is written when any value is refused."""
    lines = [known_hosts_line(names, pubkey) for names, pubkey in entries.values()]
    path = state / "known_hosts"
    path.write_text("\n".join(lines) + "\n")
    path.chmod(0o600)
    return path


def write_ssh_config(state: Path, hosts: list[SshHost], default_key: Path | None) -> Path:
    """The lab's ssh_config, one block per node. Every value must be one word
    (SshConfigError otherwise, and nothing is written)."""
    path = state / "ssh_config"
    control_path = ssh_control_path()
    blocks = []
    for h in hosts:
        key = h.key_file or (str(default_key) if default_key else None)
        if isinstance(h.port, bool) or not isinstance(h.port, int) or not 0 < h.port < 65536:
            raise SshConfigError(f"{h.name}: port {h.port!r} is not a TCP port (1-65535)")
        lines = [
            f"Host {_word('host name', h.name, _HOST_WORD)} "
            f"{_word(h.name + ': address', h.address, _HOST_WORD)}",
            f"  HostName {h.address}",
            f"  User {_word(h.name + ': user', h.user)}",
            f"  Port {h.port}",
        ]
        if key:
            lines += [f"  IdentityFile {_word(h.name + ': key_file', key)}", "  IdentitiesOnly yes"]
        lines += [
            f"  UserKnownHostsFile {_word('state dir', state / 'known_hosts')}",
            "  StrictHostKeyChecking yes",
            "  ControlMaster auto",
            f"  ControlPath {_word('runtime dir', control_path)}",
            "  ControlPersist 60s",
            "  ConnectTimeout 10",
            "  ServerAliveInterval 5",
            "  LogLevel ERROR",
        ]
        blocks.append("\n".join(lines))
    path.write_text("# Generated by clusterlab.\n" + "\n\n".join(blocks) + "\n")
    return path


def common_args(state: Path) -> str:
    """ansible_ssh_common_args: testinfra's ansible backend reads only this for SSH options."""
    return f"-F {state / 'ssh_config'}"


def ansible_control_path() -> str:
    """The ControlPath Ansible's ssh uses (control_path_dir from ansible.env(), ssh's %C
    hash as ansible.cfg's control_path says)."""
    return ansible_control_path_dir() + "/%C"


def _config_hosts(config: Path) -> list[tuple[str, str]]:
    """(name, address) of every `Host NAME ADDRESS` block of a lab's ssh_config."""
    out = []
    for line in config.read_text().splitlines():
        words = line.split()
        if len(words) == 3 and words[0] == "Host":
            out.append((words[1], words[2]))
    return out


def control_paths(state: Path) -> list[str]:
    """Every SSH control socket this lab's connections use: the lab's ssh_config's (inv ssh,
    the provider, testinfra) and Ansible's, per node, as ssh itself expands them (ssh -G)."""
    config = state / "ssh_config"
    if not config.is_file():
        return []
    runtime_dir()
    found = []
    for name, address in _config_hosts(config):
        for extra, target in (
            ([], name),
            (["-o", f"ControlPath={ansible_control_path()}"], address),
        ):
            res = subprocess.run(
                ["ssh", "-F", str(config), *extra, "-G", target],
                capture_output=True,
                text=True,
                check=False,
            )
            for line in res.stdout.splitlines():
                key, _, value = line.partition(" ")
                if key == "controlpath" and value not in ("", "none") and value not in found:
                    found.append(value)
    return found


def masters(state: Path) -> dict[int, str]:
    """pid -> control path of the SSH control masters of this lab still running."""
    wanted = set(control_paths(state))
    return {pid: path for pid, path in clusterlab_masters().items() if path in wanted}


def kill_masters(state: Path) -> None:
    """End this lab's SSH control masters (`ssh -O exit` on each of its control paths, then
    SIGTERM to any left) and stray clients whose command line names its state dir."""
    config = state / "ssh_config"
    for path in control_paths(state):
        if Path(path).exists():
            subprocess.run(
                ["ssh", "-F", str(config), "-o", f"ControlPath={path}", "-O", "exit", "x"],
                capture_output=True,
                check=False,
                timeout=10,
            )
    for pid in masters(state):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    marker = str(state).encode()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if (
            argv
            and Path(argv[0].decode(errors="replace")).name == "ssh"
            and any(marker in a for a in argv)
        ):
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(proc.name), signal.SIGTERM)


def clusterlab_masters() -> dict[int, str]:
    """pid -> control path of every running SSH master of any clusterlab lab (the lab's
    ssh_config's <runtime dir>/ssh-* and Ansible's control_path_dir). A master renames
    itself `ssh: <control path> [mux]`: it is found by its path, not by its arguments."""
    prefixes = (ssh_control_path().removesuffix("%C"), ansible_control_path().removesuffix("%C"))
    out = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv0 = (proc / "cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
        except OSError:
            continue
        if argv0.startswith("ssh: ") and argv0.endswith(" [mux]"):
            path = argv0[len("ssh: ") : -len(" [mux]")]
            if path.startswith(prefixes):
                out[int(proc.name)] = path
    return out
