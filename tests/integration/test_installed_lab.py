"""A lab brought up and down by clusterlab installed from its wheel, in a user's directory."""

from __future__ import annotations

import json
import re

import pytest
import yaml

from clusterlab.spec import normalize
from installed import Installed, install


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Installed:
    return install(tmp_path_factory.mktemp("installed"))


def test_installed_copy_brings_a_local_lab_up_to_prepare_and_down(labs, installed, monkeypatch):
    project = labs.root / "project"
    project.mkdir()
    assert installed.run("init", "pkgit", cwd=project).returncode == 0
    lab_yml = project / "inventories" / "pkgit" / "lab.yml"
    text = lab_yml.read_text()
    text = re.sub(r"(?m)^  count: 3$", "  count: 1", text)
    text = re.sub(r"(?m)^    - size: 10G$", "    - size: 5G", text)
    text = re.sub(r"(?m)^  cidr: .*$", "  cidr: 10.213.70.0/24", text)
    lab_yml.write_text(text)
    state = project / ".clusterlab" / "pkgit"  # the default state dir: ./.clusterlab
    monkeypatch.setenv("CLUSTERLAB_STATE", str(state.parent))
    prov = labs.provider(normalize(yaml.safe_load(text)))  # its twin, for the leak check
    assert prov.state == state

    up = installed.run("up", "--lab", "pkgit", "--until", "prepare", cwd=project, timeout=1800)
    assert up.returncode == 0, up.stdout + up.stderr
    assert "ok prepare" in up.stderr
    assert "\x1b[K" not in up.stderr, "no live line into a pipe"
    table = up.stderr[up.stderr.index("STAGE") :].splitlines()
    assert [row.split()[0] for row in table] == [
        "STAGE",
        "provision",
        "prepare",
        "verify-nodes",
        "total",
    ]
    assert (state / "stages" / "prepare.done").exists()
    timings = json.loads((state / "timings.json").read_text())
    assert {"provision", "prepare", "verify-nodes"} <= set(timings)
    stream = [
        json.loads(line)
        for line in (state / "logs" / "prepare.events.jsonl").read_text().splitlines()
    ]
    assert stream[-1]["event"] == "stats"
    assert stream[-1]["hosts"]["node1"]["failures"] == 0
    assert "PLAY RECAP" in (state / "logs" / "prepare.log").read_text()

    down = installed.run("down", "--lab", "pkgit", cwd=project, timeout=600)
    assert down.returncode == 0, down.stderr
    assert not state.exists()
