"""Terminal output: one progress line per stage, problems on stderr, plain text tables."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the program runs (as SIGINT raises KeyboardInterrupt)."""


def interrupt_code(exc: KeyboardInterrupt) -> int:
    """The shell's exit code for a run stopped by a signal: 128 + its number."""
    return 143 if isinstance(exc, Terminated) else 130


def info(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def live_output(stream: TextIO | None = None) -> bool:
    """Whether to draw live progress lines: on a terminal only ($CLUSTERLAB_PROGRESS=plain|live
    decides instead)."""
    choice = os.environ.get("CLUSTERLAB_PROGRESS", "")
    if choice in ("plain", "live"):
        return choice == "live"
    stream = stream or sys.stderr
    return stream.isatty() and os.environ.get("TERM", "") != "dumb"


def table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(str(c))) for w, c in zip(widths, row, strict=True)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    for row in rows:
        cells = zip(row, widths, strict=True)
        lines.append("  ".join(str(c).ljust(w) for c, w in cells).rstrip())
    return "\n".join(lines)


@contextmanager
def stage(name: str, timings: dict[str, float] | None = None) -> Iterator[None]:
    """Print '==> name' then 'ok name (1.2 s)' or 'FAILED name (1.2 s)'."""
    info(f"==> {name}")
    start = time.monotonic()
    try:
        yield
    except KeyboardInterrupt:
        info(f"interrupted {name} ({time.monotonic() - start:.1f} s); running it again resumes")
        raise
    except BaseException:
        info(f"FAILED {name} ({time.monotonic() - start:.1f} s)")
        raise
    took = time.monotonic() - start
    if timings is not None:
        timings[name] = round(took, 2)
    info(f"ok {name} ({took:.1f} s)")
