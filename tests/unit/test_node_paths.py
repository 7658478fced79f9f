"""Binaries the stages install outside sudo's secure_path are called by path, and kubeadm runs
with the bin dir on PATH.

sudo on RHEL resets PATH to secure_path=/sbin:/bin:/usr/sbin:/usr/bin, so as vagrant (or core
on Flatcar, whose binaries live in /opt/bin) `become` finds neither /usr/local/bin/ctr nor
/opt/bin/kubeadm by name; kubeadm itself runs `kubelet --version` (preflight KubeletVersion)
and crictl by name. Kubespray calls "{{ bin_dir }}/ctr" and sets
`environment: PATH: "{{ bin_dir }}:…"` around kubeadm init/join/reset
(roles/kubernetes/control-plane/tasks/kubeadm-setup.yml, roles/kubernetes/kubeadm/tasks/main.yml,
roles/reset/tasks/main.yml).
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
import yaml

from clusterlab import paths

pytestmark = pytest.mark.unit

# What the stages install into clusterlab_bin_dir (or, for the distro runtime, /usr/bin).
INSTALLED = {"kubeadm", "kubelet", "kubectl", "crictl", "ctr", "runc", "containerd"}
COMMAND_MODULES = {"ansible.builtin.command", "ansible.builtin.shell", "command", "shell"}
# kubeadm subcommands that look up kubelet/crictl by name.
KUBEADM_RUNS = re.compile(r"(kubeadm\s+(init|join|config images pull)|\breset -f\b)")
TASK_FILES = sorted(paths.ROOT.glob("roles/**/tasks/*.yml"))


def tasks(items) -> Iterator[dict]:
    for task in items or []:
        if not isinstance(task, dict):
            continue
        yield task
        for key in ("block", "rescue", "always"):
            yield from tasks(task.get(key))


def command_text(task: dict) -> str | None:
    for module in COMMAND_MODULES & set(task):
        value = task[module]
        if isinstance(value, dict):
            value = value.get("cmd") or " ".join(value.get("argv") or [])
        return str(value)
    return None


def cmds_anywhere(value) -> Iterator[str]:
    """Every `cmd:` string in a task's arguments (node_state's commands)."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "cmd" and isinstance(item, str):
                yield item
            else:
                yield from cmds_anywhere(item)
    elif isinstance(value, list):
        for item in value:
            yield from cmds_anywhere(item)


def commands() -> Iterator[tuple[str, dict, str]]:
    for path in TASK_FILES:
        for task in tasks(yaml.safe_load(path.read_text())):
            text = command_text(task)
            rel = f"{path.relative_to(paths.ROOT)}: {task.get('name')}"
            if text is not None:
                yield rel, task, text
            for cmd in cmds_anywhere({k: v for k, v in task.items() if k not in COMMAND_MODULES}):
                yield rel, task, cmd


def test_installed_binaries_are_never_called_by_bare_name():
    bare = [
        (where, text)
        for where, _task, text in commands()
        if text.split() and text.split()[0] in INSTALLED
    ]
    assert bare == []
    assert any("container_runtime_ctr" in text for _w, _t, text in commands())


def test_kubeadm_runs_with_the_bin_dir_on_path():
    runs = [(w, t) for w, t, text in commands() if KUBEADM_RUNS.search(text)]
    assert len(runs) >= 5  # config images pull, init, join, and the resets
    for where, task in runs:
        path = (task.get("environment") or {}).get("PATH", "")
        assert path == "{{ clusterlab_command_path }}", where
    defaults = yaml.safe_load(
        (paths.ROOT / "roles/common/clusterlab/defaults/main.yml").read_text()
    )
    first = defaults["clusterlab_command_path"].split(":")
    assert first[0] == "{{ clusterlab_bin_dir }}"
    assert {"/usr/sbin", "/usr/bin", "/sbin", "/bin"} <= set(first)


def test_ctr_is_where_each_runtime_source_installs_it():
    variables = yaml.safe_load(
        (paths.ROOT / "roles/prepare/container_runtime/vars/main.yml").read_text()
    )
    ctr = variables["container_runtime_ctr"]
    assert "clusterlab_bin_dir ~ '/ctr'" in ctr
    assert "'/usr/bin/ctr'" in ctr
