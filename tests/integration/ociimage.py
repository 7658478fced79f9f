"""Real OCI images and a real registry for tests, made from Debian's own packages.

`busybox_layout` builds a one-layer image holding Debian's static busybox with umoci (an OCI
image layout on disk); `Registry` runs Debian's docker-registry (CNCF distribution) on
loopback with its storage in a temp dir, and stops it, also when a test fails.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

BUSYBOX = Path("/bin/busybox")
TOOLS = ("umoci", "skopeo", "docker-registry")


def missing_tools() -> list[str]:
    found = [t for t in TOOLS if not shutil.which(t)]
    return found + ([] if BUSYBOX.is_file() else ["busybox-static"])


def run(cmd: list[str], timeout: float = 120) -> str:
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    if res.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed: {res.stderr.strip()}")
    return res.stdout


def busybox_layout(
    work: Path, tag: str = "latest", marker: str = "", cmd: tuple[str, ...] = ("/bin/busybox",)
) -> str:
    """An OCI layout under `work` with busybox (and /marker holding `marker`), running `cmd`
    by default; its oci: ref."""
    layout = work / "layout"
    if not layout.exists():
        run(["umoci", "init", "--layout", str(layout)])
    ref = f"{layout}:{tag}"
    run(["umoci", "new", "--image", ref])
    unpacked = work / f"unpacked-{tag}"
    run(["umoci", "unpack", "--image", ref, str(unpacked)])
    rootfs = unpacked / "rootfs"
    (rootfs / "bin").mkdir(parents=True, exist_ok=True)
    shutil.copy2(BUSYBOX, rootfs / "bin" / "busybox")
    (rootfs / "marker").write_text(marker or tag)
    run(["umoci", "repack", "--image", ref, str(unpacked)])
    cmd_args = [a for word in cmd for a in ("--config.cmd", word)]
    run(["umoci", "config", "--image", ref, *cmd_args, "--os", "linux"])
    run(["umoci", "gc", "--layout", str(layout)])
    shutil.rmtree(unpacked)
    return f"oci:{ref}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Registry:
    """docker-registry on 127.0.0.1:<free port>, storage under `root`."""

    def __init__(self, root: Path):
        self.root = root
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> Registry:
        self.root.mkdir(parents=True, exist_ok=True)
        cfg = self.root / "config.yml"
        cfg.write_text(
            "version: 0.1\n"
            f"storage:\n  filesystem:\n    rootdirectory: {self.root / 'data'}\n"
            f"http:\n  addr: {self.host}\n"
        )
        log = open(self.root / "registry.log", "w")
        self.proc = subprocess.Popen(
            ["docker-registry", "serve", str(cfg)], stdout=log, stderr=subprocess.STDOUT
        )
        self._log = log
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://{self.host}/v2/", timeout=2):
                    return self
            except OSError:
                time.sleep(0.2)
        self.__exit__(None, None, None)
        raise AssertionError(f"docker-registry did not answer on {self.host}")

    def __exit__(self, *exc) -> None:
        if self.proc:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self._log.close()
            self.proc = None

    def push(self, source: str, repo_tag: str) -> str:
        """Copy `source` (an oci: ref) to <this registry>/repo_tag; its manifest digest."""
        dest = f"docker://{self.host}/{repo_tag}"
        run(["skopeo", "copy", "--quiet", "--dest-tls-verify=false", source, dest])
        out = run(["skopeo", "inspect", "--tls-verify=false", "--format", "{{.Digest}}", dest])
        return out.strip()
