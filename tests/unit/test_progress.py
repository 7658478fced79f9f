"""Live stage progress: our Ansible callback's events, replayed from recorded streams into the
renderer (terminal and plain output), and recorded again from a real playbook run."""

from __future__ import annotations

import io
import json
import re
import sys
from pathlib import Path

import pytest

from clusterlab import ansible, paths, progress, stages, ui

pytestmark = pytest.mark.unit

FIXTURES = paths.ROOT / "tests" / "fixtures"
PLAY = FIXTURES / "progress-play.yml"
# Recorded with the callback: progress-play.yml on three local hosts, node2 failing its check.
FAILED_STREAM = FIXTURES / "progress" / "fixture-failed.events.jsonl"
# Recorded with the callback: the prepare stage of a one-node local lab (tests/integration/
# test_installed.py brought it up).
PREPARE_STREAM = FIXTURES / "progress" / "prepare.events.jsonl"


def events(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


class Clock:
    """The recorded events' own time, so the elapsed time drawn is the recording's."""

    def __init__(self, t: float):
        self.t = t

    def __call__(self) -> float:
        return self.t


def render(stream: list[dict], live: bool, width: int = 200) -> tuple[str, progress.StageProgress]:
    """Feed the stream one event at a time and draw after each, as `follow` does per poll."""
    out, clock = io.StringIO(), Clock(stream[0]["t"])
    prog = progress.StageProgress(out, live=live, clock=clock, width=width)
    for ev in stream:
        clock.t = ev["t"]
        prog.feed(ev)
        prog.draw()
    prog.close()
    return out.getvalue(), prog


def frames(output: str) -> list[str]:
    """The successive contents of the live line."""
    return [f for f in output.split(progress.CLEAR) if f]


def test_terminal_output_is_one_line_redrawn_in_place():
    output, _ = render(events(FAILED_STREAM), live=True)
    assert "\n" not in output  # never scrolls: every frame overwrites the line
    assert output.startswith(progress.CLEAR)
    assert output.endswith(progress.CLEAR)  # erased at the end: the stage prints its own line
    shown = frames(output)
    assert shown[0] == "    [0:00] starting"
    assert "    [0:00] Write a marker file (0/3 hosts)" in shown
    assert any(re.fullmatch(r"    \[0:0\d\] Write a marker file \(3/3 hosts\)", f) for f in shown)
    waits = [f for f in shown if "waiting:" in f]
    assert waits, shown
    assert all(
        re.search(r"waiting: Wait for the first host .*\(node1 attempt [23]/6, [0-2]/3 hosts\)$", f)
        for f in waits
    ), waits
    assert any(f.endswith("Once for the whole play (1/1 hosts)") for f in shown)
    # node2 failed its check: still 3 hosts for that task, but 2 notified for the handler
    assert any(f.endswith("Check the disk of the node (3/3 hosts)") for f in shown)
    assert shown[-1].endswith("Report the marker (2/2 hosts)")


def test_terminal_frames_follow_the_recorded_clock_and_never_overcount():
    stream = events(FAILED_STREAM)
    output, _ = render(stream, live=True)
    took = int(stream[-1]["t"] - stream[0]["t"])
    stamps = [re.match(r"    \[(\d+):(\d\d)\]", f) for f in frames(output)]
    seconds = [int(m[1]) * 60 + int(m[2]) for m in stamps]
    assert seconds == sorted(seconds)
    assert seconds[-1] == took
    for f in frames(output):
        m = re.search(r"\((\d+)/(\d+) hosts\)$", f)
        if m:
            assert int(m[1]) <= int(m[2]), f


def test_terminal_line_fits_the_terminal_width():
    output, _ = render(events(FAILED_STREAM), live=True, width=40)
    shown = frames(output)
    assert max(len(f) for f in shown) <= 39
    assert any(f.endswith("…") for f in shown)


def test_plain_output_draws_nothing_and_keeps_the_failure():
    output, prog = render(events(FAILED_STREAM), live=False)
    assert output == ""
    # node3's failure was ignored (ignore_errors): only node2's counts
    assert prog.failed_task == {"node2": "Check the disk of the node"}


def test_plain_stage_lines_stay_as_they_were():
    out = io.StringIO()
    prog = progress.StageProgress(out, live=False)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("sys.stderr", out)
        with ui.stage("prepare"):
            for ev in events(FAILED_STREAM):
                prog.feed(ev)
                prog.draw()
            prog.close()
    assert re.fullmatch(r"==> prepare\nok prepare \(\d+\.\d s\)\n", out.getvalue())


def test_a_real_stage_stream_replays():
    stream = events(PREPARE_STREAM)
    output, prog = render(stream, live=True)
    shown = frames(output)
    tasks = [e["name"] for e in stream if e["event"] == "task"]
    assert len(tasks) > 20
    assert sum(1 for t in tasks if any(f"] {t} (" in f for f in shown)) == len(tasks)
    assert all(f.endswith("(1/1 hosts)") or "(0/1 hosts)" in f for f in shown if "hosts)" in f)
    assert prog.failed_task == {}


def test_live_output_only_on_a_terminal(monkeypatch):
    monkeypatch.delenv("CLUSTERLAB_PROGRESS", raising=False)
    assert ui.live_output(io.StringIO()) is False
    monkeypatch.setenv("CLUSTERLAB_PROGRESS", "live")
    assert ui.live_output(io.StringIO()) is True
    monkeypatch.setenv("CLUSTERLAB_PROGRESS", "plain")
    assert ui.live_output(io.StringIO()) is False


def test_follow_reads_lines_written_while_it_polls(tmp_path):
    """A line written in two parts is fed once complete; what comes before the end is read."""
    path = tmp_path / "e.jsonl"
    path.write_text('{"event": "play", "name": "P", "hosts": ["a", "b"]}\n{"event": "ta')
    rest = iter(
        [
            'sk", "name": "T"}\n{"event": "ok", "host": "a", "task": "T"}\n',
            '{"event": "ok", "host": "b", "task": "T"}',  # the last line has no newline
        ]
    )

    def running() -> bool:
        more = next(rest, None)
        if more is None:
            return False
        with path.open("a") as fh:
            fh.write(more)
        return True

    prog = progress.StageProgress(io.StringIO(), live=False)
    progress.follow(path, prog, running, poll=0)
    assert prog.task == "T"
    assert prog.done == {"a", "b"}


def test_the_callback_records_a_real_run(tmp_path):
    """ansible-playbook with our callback writes the events the recorded stream holds, and a
    failed stage names the host, its task and message (the ignored failure stays out)."""
    inv = tmp_path / "inv.yml"
    inv.write_text(
        f"all:\n  vars:\n    ansible_connection: local\n"
        f"    ansible_python_interpreter: {sys.executable}\n"
        "  hosts:\n    node1:\n    node2:\n    node3:\n"
    )
    (tmp_path / "m").mkdir()
    log = tmp_path / "logs" / "fixture.log"
    prog = progress.StageProgress(io.StringIO(), live=True, width=100)
    with pytest.raises(ansible.AnsibleError) as exc:
        ansible.run_playbook(
            PLAY,
            inv,
            log,
            extra_vars={"marker_dir": str(tmp_path / "m"), "fail_host": "node2"},
            progress=prog,
        )
    detail = str(exc.value).splitlines()[1:]
    assert detail == ["node2: [Check the disk of the node] node2 has no usable disk"]
    assert "PLAY RECAP" in log.read_text()  # the full output is kept in the log as before

    def shape(stream: list[dict]) -> set[tuple]:
        return {(e["event"], e.get("host"), e.get("task") or e.get("name")) for e in stream}

    recorded = events(log.with_name("fixture.events.jsonl"))
    assert shape(recorded) == shape(events(FAILED_STREAM))
    assert prog.out.getvalue().endswith(progress.CLEAR)


def test_timings_table_lists_what_ran_with_a_total(tmp_path, monkeypatch):
    monkeypatch.setenv("CLUSTERLAB_STATE", str(tmp_path))
    spec = {"name": "t"}
    (tmp_path / "t").mkdir()
    for name, took in (("provision", 1.04), ("prepare", 61.5), ("kubernetes", 300.0)):
        stages.record_timing(spec, name, took)
    table = stages.timings_table(spec, ["provision", "prepare", "verify-nodes"])
    assert table.splitlines() == [
        "STAGE      TIME",
        "provision  1.0 s",
        "prepare    61.5 s",
        "total      62.5 s",
    ]


def test_a_delegated_failure_keeps_its_message_and_task():
    """A task of node1 delegated to the controller fails as 'node1 -> localhost': its message
    (e.g. the download step's 'cannot download URL') must reach the user, with its task."""
    line = "node1 -> localhost: cannot download https://example.invalid/kubeadm: refused"
    failed_task = {"node1": "download : Say what could not be downloaded"}
    assert ansible._host(line) == "node1"
    assert ansible._with_task(line, failed_task) == (
        "node1 -> localhost: [download : Say what could not be downloaded] "
        "cannot download https://example.invalid/kubeadm: refused"
    )
