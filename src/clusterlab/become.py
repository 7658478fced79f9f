"""The sudo password for non-root users on static nodes: asked once, never written to disk."""

from __future__ import annotations

import getpass
import os
import subprocess
import sys
from pathlib import Path

from clusterlab import sshconf
from clusterlab.providers.base import ProviderError

ENV = "CLUSTERLAB_BECOME_PASSWORD"
_cache: dict[str, str] = {}


def needs_password(ssh_config: Path, node: str) -> bool:
    """True when `sudo -n` on the node asks for a password."""
    sshconf.runtime_dir()  # the ssh_config's ControlPath directory (gone after a reboot)
    res = subprocess.run(
        ["ssh", "-F", str(ssh_config), "-o", "BatchMode=yes", node, "sudo -n true"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    return res.returncode != 0 and "password" in res.stderr.lower()


def password(lab: str) -> str:
    """From $CLUSTERLAB_BECOME_PASSWORD, else asked once per command on the terminal."""
    if lab not in _cache:
        value = os.environ.get(ENV)
        if value is None:
            if not sys.stdin.isatty():
                raise ProviderError(
                    f"sudo on lab {lab}'s nodes needs a password: set {ENV} or run from a terminal"
                )
            value = getpass.getpass(f"sudo password for lab {lab}'s nodes: ")
        _cache[lab] = value
    return _cache[lab]


def for_spec(spec: dict, ssh_config: Path) -> str | None:
    """The become password a static lab needs, or None (root logins, passwordless sudo)."""
    if os.environ.get(ENV) is not None:
        return os.environ[ENV]
    for node in spec["nodes"]:
        if node.get("user") not in (None, "root") and needs_password(ssh_config, node["name"]):
            return password(spec["name"])
    return None
