"""Live progress of a running stage, from the events our Ansible callback writes.

The callback (clusterlab/ansible_callbacks/clusterlab_events.py) appends one JSON object per
event to a file; `follow` reads it while ansible-playbook runs and feeds `StageProgress`,
which keeps one line up to date on a terminal: the current task (or the wait it is in),
hosts done / total and the elapsed time. Elsewhere (a pipe, CI) it prints nothing: the
stage's own plain lines stay as they are.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from clusterlab import ui

CALLBACK = "clusterlab_events"
CALLBACK_DIR = Path(__file__).resolve().parent / "ansible_callbacks"
RESULTS = ("ok", "changed", "skipped", "failed", "unreachable")
CLEAR = "\r\x1b[K"  # back to the line's start, erase it


def elapsed(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 60}:{s % 60:02d}"


class StageProgress:
    """State of one running playbook, drawn as one live line on a terminal."""

    def __init__(
        self,
        out: TextIO | None = None,
        *,
        live: bool | None = None,
        clock: Callable[[], float] = time.monotonic,
        width: int | None = None,
    ):
        self.out = out or sys.stderr
        self.live = ui.live_output(self.out) if live is None else live
        self.clock = clock
        self.start = clock()
        self.width = width
        self.play = ""
        self.play_hosts: list[str] = []
        self.task: str | None = None
        self.handler = False
        self.total = 0
        self.started: set[str] = set()
        self.done: set[str] = set()
        self.down: set[str] = set()  # hosts out of the run: failed (not ignored) or unreachable
        self.waiting: tuple[str, int, int] | None = None  # host, attempt, attempts allowed
        self.failed_task: dict[str, str] = {}  # host -> the task it failed in
        self.shown = ""

    def feed(self, ev: dict) -> None:
        kind, host = ev.get("event"), ev.get("host", "")
        if kind == "play":
            self.play, self.play_hosts, self.task = ev.get("name", ""), ev.get("hosts") or [], None
        elif kind == "task":
            self.task, self.handler = ev.get("name", ""), bool(ev.get("handler"))
            self.started, self.done, self.waiting = set(), set(), None
            # the hosts it runs on: one when run_once, else the play's hosts still in the run
            # (a handler: the notified ones, counted as they start)
            active = [h for h in self.play_hosts if h not in self.down]
            self.total = 1 if ev.get("run_once") else len(active)
        elif kind == "start":
            self.started.add(host)
        elif kind == "retry":
            self.waiting = (host, int(ev.get("attempt") or 0), int(ev.get("retries") or 0))
        elif kind in RESULTS:
            self.done.add(host)
            if self.waiting and self.waiting[0] == host:
                self.waiting = None
            if kind == "unreachable" or (kind == "failed" and not ev.get("ignored")):
                self.down.add(host)
                self.failed_task[host] = ev.get("task", "")

    def text(self) -> str:
        head = f"    [{elapsed(self.clock() - self.start)}]"
        if self.task is None:
            return f"{head} {self.play or 'starting'}".rstrip()
        total = len(self.started) if self.handler else max(self.total, len(self.done))
        notes = [f"{len(self.done)}/{total} hosts"] if total else []
        what = self.task
        if self.waiting:
            host, attempt, allowed = self.waiting
            what = f"waiting: {self.task}"
            notes.insert(0, f"{host} attempt {attempt + 1}/{allowed}")
        return f"{head} {what}" + (f" ({', '.join(notes)})" if notes else "")

    def draw(self) -> None:
        if not self.live:
            return
        width = self.width or shutil.get_terminal_size().columns
        line = self.text()
        if len(line) > width - 1:
            line = line[: max(width - 2, 0)] + "…"
        if line != self.shown:
            self.out.write(CLEAR + line)
            self.out.flush()
            self.shown = line

    def close(self) -> None:
        """Erase the live line (the stage prints its own closing line)."""
        if self.live and self.shown:
            self.out.write(CLEAR)
            self.out.flush()
        self.shown = ""


def replay(lines: list[str], progress: StageProgress) -> None:
    """Feed complete JSON lines; a line that is not an event is skipped."""
    for line in lines:
        try:
            ev = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(ev, dict):
            progress.feed(ev)


def follow(
    events: Path, progress: StageProgress, running: Callable[[], bool], poll: float = 0.2
) -> None:
    """Feed the events appended to `events` until `running()` is false and all are read."""
    pending = ""
    with events.open(encoding="utf-8", errors="replace") as fh:
        while True:
            alive = running()  # asked before reading: what it wrote before exiting is read
            pending += fh.read()
            *complete, pending = pending.split("\n")
            replay(complete, progress)
            progress.draw()  # the clock moves even without events
            if not alive:
                break
            time.sleep(poll)
    replay([pending], progress)
