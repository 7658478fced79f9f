"""Verify, demos layer: the point of every demo that ran on the lab still holds.

A demo run live (`inv demo NAME`) records <state>/demos/NAME.done (the state dir is the
inventory's all.vars clusterlab_state_dir); `inv demo NAME --cleanup` removes the record with
the demo's objects. For each recorded demo, with kubectl on the controller: its namespace is
still there, and its checks are run again where they can be, by the demo runner's own
machinery (clusterlab.demos.runner.verify_steps: the demo's extra["verify"] steps, else its
last read-only step with a check among the steps that ran), with the values the run kept
(a PV's name), waiting as long as the demo waits. A demo with no
re-runnable check is skipped, saying so.
"""

from __future__ import annotations

import json
from pathlib import Path

import labkube
import pytest
import yaml
from labkube import read_inventory

from clusterlab.demos import DEMOS, runner


def _inventory_path(config: pytest.Config) -> Path:
    return Path(config.option.ansible_inventory)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "demo_name" in metafunc.fixturenames:
        lab = read_inventory(_inventory_path(metafunc.config))
        names = runner.demos_done(Path(lab["vars"]["clusterlab_state_dir"]))
        metafunc.parametrize("demo_name", names)


@pytest.fixture(scope="module")
def lab(request) -> dict:
    return read_inventory(_inventory_path(request.config))


@pytest.fixture(scope="module")
def ctx(request):
    return runner.context(yaml.safe_load(_inventory_path(request.config).read_text()))


def test_the_demo_ran_on_this_lab_and_its_namespace_is_there(demo_name, lab):
    assert demo_name in DEMOS, f"{demo_name} is recorded as run but is no known demo"
    state = Path(lab["vars"]["clusterlab_state_dir"])
    record = json.loads(runner.done_file(state, demo_name).read_text())
    assert record["lab"] == lab["vars"]["clusterlab_lab"], record
    ns = DEMOS[demo_name].ns
    out = labkube.kubectl(lab, "get", "namespace", ns, "--ignore-not-found", "-o", "name")
    assert out.strip() == f"namespace/{ns}", f"{demo_name} ran, yet namespace {ns} is gone"


def test_the_demo_checks_pass_again(demo_name, lab, ctx):
    demo = DEMOS[demo_name]
    v = lab["vars"]
    record = json.loads(runner.done_file(Path(v["clusterlab_state_dir"]), demo_name).read_text())
    steps = runner.verify_steps(demo, ctx, record.get("steps"))
    if not steps:
        pytest.skip(f"demo {demo_name} has no re-runnable check (no read-only step with a check)")
    check = runner.Runner(
        demo,
        ctx,
        runner.kubectl_executor(
            [v["clusterlab_kubectl"], "--kubeconfig", v["clusterlab_kubeconfig"]]
        ),
        Path(v["clusterlab_state_dir"]) / "demos" / demo_name,
        out=lambda _line: None,
    )
    assert check.verify(record) == []
