"""Run Ansible with the project's ansible.cfg, logging full output to the lab's stage log."""

from __future__ import annotations

import configparser
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from clusterlab import files, paths, progname, sshconf
from clusterlab import progress as progress_mod

RECAP_RE = re.compile(
    r"^(?P<host>\S+)\s*:\s*ok=(?P<ok>\d+)\s+changed=(?P<changed>\d+)\s+unreachable=(?P<unreachable>\d+)"
    r"\s+failed=(?P<failed>\d+)",
    re.MULTILINE,
)


class AnsibleError(Exception):
    pass


def env() -> dict[str, str]:
    """Environment for every Ansible call: our ansible.cfg by absolute path; SSH control
    sockets and local temp in the running user's private runtime directory (sshconf)."""
    e = dict(os.environ)
    # Ansible's own commands that Ansible and testinfra call by name (ansible-inventory for
    # `verify`, ansible-galaxy …) are the ones installed with clusterlab, also where that
    # environment's bin/ is not on PATH (pipx, a venv run without activating it).
    here = str(Path(sys.executable).parent)
    e["PATH"] = os.pathsep.join(
        [here, *(p for p in e.get("PATH", "").split(os.pathsep) if p and p != here)]
    )
    e["ANSIBLE_CONFIG"] = str(paths.ANSIBLE_CFG)
    e.setdefault("ANSIBLE_FORCE_COLOR", "0")
    e["ANSIBLE_LOCAL_TEMP"] = sshconf.ansible_local_temp()
    e["ANSIBLE_SSH_CONTROL_PATH_DIR"] = sshconf.ansible_control_path_dir()
    return e


def private_file(path: Path, mode: str = "a"):
    """Open a log or event file for appending ("a") or anew ("w"), readable by its owner only
    (0600, also when it existed with a wider mode): stage output can carry secrets."""
    path.parent.mkdir(parents=True, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC | (os.O_APPEND if mode == "a" else os.O_TRUNC)
    fd = os.open(path, flags, 0o600)
    os.fchmod(fd, 0o600)
    return os.fdopen(fd, mode, encoding="utf-8")


def bin_path(name: str) -> str:
    """An Ansible executable next to the running interpreter (the venv), else from PATH."""
    cand = Path(sys.executable).parent / name
    return str(cand) if cand.exists() else name


FAILURE_RE = re.compile(
    r'^(?P<kind>fatal|failed): \[(?P<host>[^\]]+)\].*"msg": "(?P<msg>(?:[^"\\]|\\.)*)"',
    re.MULTILINE,
)


def failures(output: str) -> list[str]:
    """'host: message' for every failed task in ansible-playbook output, deduplicated.

    A loop item's failure ('failed: [host] (item=…)') that a later task of the same host
    reports as a whole ('fatal: [host]', e.g. a rescue explaining it) gives way to that report.
    """
    found: list[tuple[str, str, str]] = []
    for m in FAILURE_RE.finditer(output):
        msg = m["msg"].encode().decode("unicode_escape", errors="replace")
        if m["kind"] == "fatal":
            found = [f for f in found if not (f[0] == "failed" and f[1] == m["host"])]
        found.append((m["kind"], m["host"], msg))
    seen: list[str] = []
    for _, host, msg in found:
        line = f"{host}: {msg}"
        if line not in seen:
            seen.append(line)
    return seen


def recap(output: str) -> dict[str, dict[str, int]]:
    """PLAY RECAP lines -> {host: {ok, changed, unreachable, failed}}."""
    out: dict[str, dict[str, int]] = {}
    for m in RECAP_RE.finditer(output):
        out[m["host"]] = {k: int(m[k]) for k in ("ok", "changed", "unreachable", "failed")}
    return out


def run_playbook(
    playbook: Path,
    inventory: Path,
    log: Path,
    *,
    extra_args: list[str] | None = None,
    extra_vars: dict[str, str] | None = None,
    become_password: str | None = None,
    progress: progress_mod.StageProgress | None = None,
) -> dict[str, dict[str, int]]:
    """Run a playbook, append its full output to `log`; return the recap or raise.

    A become password reaches Ansible through the environment of its process and a script
    that prints it (--become-password-file), never through a file or the command line.
    With `progress`, our callback writes events beside the log (<stage>.events.jsonl) and
    `progress` shows them live.
    """
    cmd = [bin_path("ansible-playbook"), "-i", str(inventory), str(playbook)]
    # hints in the roles' messages name the command the user ran (clusterlab … or inv …);
    # JSON: a value with spaces or '=' stays one value (key=value splits)
    extra_vars = {"clusterlab_program": progname.program(), **(extra_vars or {})}
    cmd += ["-e", json.dumps(extra_vars)]
    cmd += extra_args or []
    log.parent.mkdir(parents=True, exist_ok=True)
    run_env = env()
    if become_password is not None:
        script = Path(__file__).parent / "scripts" / "become-password"
        if not os.access(script, os.X_OK):
            script.chmod(0o755)
        run_env["CLUSTERLAB_BECOME_PASSWORD_FOR_ANSIBLE"] = become_password
        cmd += ["--become-password-file", str(script)]
    if progress is None:
        proc = subprocess.run(
            cmd, env=run_env, stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False
        )
        returncode, stdout, stderr = proc.returncode, proc.stdout, proc.stderr
    else:
        events = log.with_name(log.stem + ".events.jsonl")
        returncode, stdout, stderr = _run_with_events(cmd, run_env, events, progress, log)
    with files.naming(log), private_file(log) as fh:
        fh.write(f"$ {' '.join(cmd)}\n{stdout}{stderr}\n")
    result = recap(stdout)
    if returncode != 0:
        found = failures(stdout)
        if progress is not None and progress.failed_task:  # the events know ignored failures
            found = [
                _with_task(line, progress.failed_task)
                for line in found
                if _host(line) in progress.failed_task
            ]
        detail = "\n".join(found) if found else "\n".join(stderr.strip().splitlines()[-15:])
        raise AnsibleError(
            f"{playbook.name} failed (exit {returncode}); full output in {log}\n{detail}"
        )
    return result


def _host(line: str) -> str:
    """The inventory host of a failures() line ('node1 -> localhost: …' is node1's task,
    delegated to the controller)."""
    return line.partition(": ")[0].split(" -> ")[0]


def _with_task(line: str, failed_task: dict[str, str]) -> str:
    where, _, msg = line.partition(": ")
    task = failed_task.get(_host(line))
    return f"{where}: [{task}] {msg}" if task else line


def events_env(events: Path) -> dict[str, str]:
    """Environment that makes ansible-playbook write our events to `events`, besides the
    callbacks ansible.cfg enables (the variable replaces the file's list)."""
    cfg = configparser.ConfigParser(interpolation=None)
    cfg.read(paths.ANSIBLE_CFG)
    enabled = [c.strip() for c in cfg.get("defaults", "callbacks_enabled", fallback="").split(",")]
    return {
        "CLUSTERLAB_EVENTS": str(events),
        "ANSIBLE_CALLBACK_PLUGINS": str(progress_mod.CALLBACK_DIR),
        "ANSIBLE_CALLBACKS_ENABLED": ",".join([*filter(None, enabled), progress_mod.CALLBACK]),
    }


def _run_with_events(
    cmd: list[str],
    run_env: dict[str, str],
    events: Path,
    progress: progress_mod.StageProgress,
    log: Path,
) -> tuple[int, str, str]:
    """Run ansible-playbook with our event callback; draw progress while it runs. Stopped
    (an interrupt), it stops Ansible too and the log gets what Ansible wrote until then."""
    private_file(events, "w").close()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(
            cmd,
            env={**run_env, **events_env(events)},
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            text=True,
        )
        try:
            progress_mod.follow(events, progress, lambda: proc.poll() is None)
        except BaseException:
            if proc.poll() is None:  # interrupted while following: stop Ansible too
                proc.terminate()
                proc.wait()
            out.seek(0)
            err.seek(0)
            with private_file(log) as fh:
                fh.write(f"$ {' '.join(cmd)}\n{out.read()}{err.read()}\n(interrupted)\n")
            raise
        finally:
            progress.close()
        out.seek(0)
        err.seek(0)
        return proc.returncode, out.read(), err.read()
