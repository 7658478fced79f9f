"""`clusterlab` console script: the same tasks as `inv`, shipped with the package."""

from __future__ import annotations

from invoke import Program

from clusterlab import __version__
from clusterlab.commands import namespace

program = Program(
    namespace=namespace(), name="clusterlab", binary="clusterlab", version=__version__
)


def main() -> None:
    program.run()
