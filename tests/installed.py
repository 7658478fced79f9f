"""clusterlab built as a wheel and installed into a fresh virtualenv, apart from the checkout.

The wheel is built from a copy of only what a build reads (pyproject.toml, setup.py,
MANIFEST.in, README.md, src/ and the shipped project files), so the checkout gets no build/
or egg-info and a file the build forgets cannot come from the checkout. The virtualenv gets
the wheel without its dependencies (`--no-deps`); they come from the running interpreter's
site-packages through a .pth line, which adds that folder to sys.path without processing
its .pth files, so the checkout's editable install stays invisible. (Installing the
dependencies again from the package index takes ~40 s here: same versions, no more truth.)
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

from clusterlab import paths

BUILD_INPUTS = ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md", "src", *paths.SHIPPED)
IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", ".pytest_cache")


@dataclass
class Installed:
    venv: Path
    wheel: Path

    @property
    def script(self) -> Path:
        return self.venv / "bin" / "clusterlab"

    def env(self, **extra: str) -> dict[str, str]:
        """The user's environment: no CLUSTERLAB_* of the test run, the venv's tools first,
        then the Ansible and pytest executables of the interpreter the dependencies are from."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("CLUSTERLAB_")}
        env["PATH"] = os.pathsep.join(
            [str(self.venv / "bin"), str(Path(sys.executable).parent), env.get("PATH", "")]
        )
        env.pop("VIRTUAL_ENV", None)
        env.pop("PYTHONPATH", None)
        return {**env, **extra}

    def run(
        self, *args: str, cwd: Path, timeout: float = 300, **env: str
    ) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(self.script), *args],
            cwd=cwd,
            env=self.env(**env),
            capture_output=True,
            text=True,
            check=False,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )

    def python(self, code: str, cwd: Path) -> str:
        return subprocess.run(
            [str(self.venv / "bin" / "python"), "-c", code],
            cwd=cwd,
            env=self.env(),
            capture_output=True,
            text=True,
            check=True,
        ).stdout


def install(tmp: Path) -> Installed:
    """Build the wheel from the working tree and install it into tmp/venv."""
    src = tmp / "src-copy"
    for name in BUILD_INPUTS:
        source, target = paths.ROOT / name, src / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, ignore=IGNORE, symlinks=True)
        else:
            shutil.copy2(source, target)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "-w", str(tmp / "dist"), str(src)], check=True)
    (wheel,) = (tmp / "dist").glob("clusterlab-*.whl")
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run([*pip, "--python", str(python), "install", "--no-deps", str(wheel)], check=True)
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    deps = sysconfig.get_paths()["purelib"]
    (Path(purelib) / "clusterlab-test-dependencies.pth").write_text(deps + "\n")
    return Installed(venv, wheel)
