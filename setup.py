"""Build hook: a wheel carries the project files the tool runs (see clusterlab.paths.SHIPPED).

They stay at the top of the checkout; building a wheel copies them, whole directories, into
the package as clusterlab/_data/ with the same layout. An editable install copies nothing
and uses the checkout's files.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache", ".vagrant", ".ansible")


def shipped() -> tuple[str, ...]:
    """clusterlab.paths.SHIPPED, read without importing the package (not installed yet)."""
    ns: dict = {}
    source = (HERE / "src" / "clusterlab" / "paths.py").read_text()
    start = source.index("SHIPPED = (")
    exec(source[start : source.index(")\n", start) + 1], ns)  # noqa: S102 - our own literal
    return ns["SHIPPED"]


class BuildPyWithData(build_py):
    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        target = Path(self.build_lib) / "clusterlab" / "_data"
        shutil.rmtree(target, ignore_errors=True)  # no stale files from an earlier build
        for name in shipped():
            src, dst = HERE / name, target / name
            dst.parent.mkdir(parents=True, exist_ok=True)
            if src.is_dir():
                shutil.copytree(src, dst, ignore=IGNORE, symlinks=True)
            else:
                shutil.copy2(src, dst)


setup(cmdclass={"build_py": BuildPyWithData})
