"""Run Ansible with the project's ansible.cfg, logging full output to the lab's stage log."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from clusterlab import paths

RECAP_RE = re.compile(
    r"^(?P<host>\S+)\s*:\s*ok=(?P<ok>\d+)\s+changed=(?P<changed>\d+)\s+unreachable=(?P<unreachable>\d+)"
    r"\s+failed=(?P<failed>\d+)",
    re.MULTILINE,
)


class AnsibleError(Exception):
    pass


def env() -> dict[str, str]:
    """Environment for every Ansible call: our ansible.cfg by absolute path."""
    e = dict(os.environ)
    e["ANSIBLE_CONFIG"] = str(paths.ANSIBLE_CFG)
    e.setdefault("ANSIBLE_FORCE_COLOR", "0")
    e["ANSIBLE_LOCAL_TEMP"] = str(Path(os.environ.get("TMPDIR", "/tmp")) / "clusterlab-ansible")
    return e


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
) -> dict[str, dict[str, int]]:
    """Run a playbook, append its full output to `log`; return the recap or raise.

    A become password reaches Ansible through the environment of its process and a script
    that prints it (--become-password-file), never through a file or the command line.
    """
    cmd = [bin_path("ansible-playbook"), "-i", str(inventory), str(playbook)]
    for key, value in (extra_vars or {}).items():
        cmd += ["-e", f"{key}={value}"]
    cmd += extra_args or []
    log.parent.mkdir(parents=True, exist_ok=True)
    run_env = env()
    if become_password is not None:
        script = Path(__file__).parent / "scripts" / "become-password"
        if not os.access(script, os.X_OK):
            script.chmod(0o755)
        run_env["CLUSTERLAB_BECOME_PASSWORD_FOR_ANSIBLE"] = become_password
        cmd += ["--become-password-file", str(script)]
    proc = subprocess.run(
        cmd, env=run_env, stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False
    )
    with log.open("a") as fh:
        fh.write(f"$ {' '.join(cmd)}\n{proc.stdout}{proc.stderr}\n")
    result = recap(proc.stdout)
    if proc.returncode != 0:
        found = failures(proc.stdout)
        detail = "\n".join(found) if found else "\n".join(proc.stderr.strip().splitlines()[-15:])
        raise AnsibleError(
            f"{playbook.name} failed (exit {proc.returncode}); full output in {log}\n{detail}"
        )
    return result
