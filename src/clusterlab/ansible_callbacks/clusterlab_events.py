"""Ansible callback: one JSON line per playbook event, appended to $CLUSTERLAB_EVENTS.

clusterlab enables it for the stages it runs and follows the file to show live progress.
Without CLUSTERLAB_EVENTS it does nothing. Events: playbook, play (with its hosts), task,
start (a host began the task), ok, changed, skipped, failed, unreachable, retry, stats.
"""

from __future__ import annotations

import json
import os
import time

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = """
name: clusterlab_events
type: aggregate
short_description: JSON lines of playbook events for clusterlab's live progress
description:
  - Appends one JSON object per event to the file named by CLUSTERLAB_EVENTS.
requirements:
  - CLUSTERLAB_EVENTS set in the environment (else the plugin is silent)
"""


def _attr(obj, name):
    """A task result's host/task/result across ansible-core versions (public since 2.19)."""
    return getattr(obj, name, None) or getattr(obj, "_" + name)


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "clusterlab_events"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        path = os.environ.get("CLUSTERLAB_EVENTS")
        self._out = None
        if path:  # 0600: task results can carry secrets
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
            self._out = os.fdopen(fd, "a", encoding="utf-8")

    def _emit(self, event: str, **fields) -> None:
        if self._out is None:
            return
        self._out.write(json.dumps({"t": round(time.time(), 3), "event": event, **fields}) + "\n")
        self._out.flush()

    def _result(self, event: str, result, **extra) -> None:
        data = _attr(result, "result")
        self._emit(
            event,
            host=_attr(result, "host").get_name(),
            task=_attr(result, "task").get_name(),
            **extra,
            **(
                {"msg": str(data["msg"])}
                if event in ("failed", "unreachable") and "msg" in data
                else {}
            ),
        )

    def v2_playbook_on_start(self, playbook):
        self._emit("playbook", file=os.path.basename(playbook._file_name))

    def v2_playbook_on_play_start(self, play):
        try:  # the play's hosts, as the strategy will run them
            hosts = [
                h.get_name() for h in play.get_variable_manager()._inventory.get_hosts(play.hosts)
            ]
        except Exception:  # a private API: progress then counts without a total
            hosts = []
        self._emit("play", name=play.get_name().strip(), hosts=hosts)

    def v2_playbook_on_task_start(self, task, is_conditional):
        self._emit("task", name=task.get_name(), handler=False, run_once=bool(task.run_once))

    def v2_playbook_on_handler_task_start(self, task):
        self._emit("task", name=task.get_name(), handler=True, run_once=bool(task.run_once))

    def v2_runner_on_start(self, host, task):
        self._emit("start", host=host.get_name(), task=task.get_name())

    def v2_runner_on_ok(self, result):
        self._result("changed" if _attr(result, "result").get("changed") else "ok", result)

    def v2_runner_on_skipped(self, result):
        self._result("skipped", result)

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._result("failed", result, ignored=bool(ignore_errors))

    def v2_runner_on_unreachable(self, result):
        self._result("unreachable", result)

    def v2_runner_retry(self, result):
        data = _attr(result, "result")
        self._result("retry", result, attempt=data.get("attempts"), retries=data.get("retries"))

    def v2_playbook_on_stats(self, stats):
        hosts = {h: stats.summarize(h) for h in sorted(stats.processed)}
        self._emit("stats", hosts=hosts)
        if self._out is not None:
            self._out.close()
            self._out = None
