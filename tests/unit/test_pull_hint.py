"""A failed image pull names where the lab pulls from: on a bundle lab the lab's own mirror
(and the ports the controller's firewall must allow, docs/offline.md), not
artifacts.image_registry; hints name the command the user ran."""

from __future__ import annotations

import re

import pytest
from localplay import local_inventory, run_playbook

from clusterlab import paths

pytestmark = pytest.mark.unit
PLAY = paths.ROOT / "tests" / "fixtures" / "image-hint-play.yml"


def hint(tmp_path, **extra) -> str:
    res = run_playbook(PLAY, local_inventory(tmp_path), {"clusterlab_program": "inv", **extra})
    assert res.returncode == 0, res.stdout + res.stderr
    found = re.search(r"HINT<(.*?)>", res.stdout, re.S)
    assert found, res.stdout
    return " ".join(found.group(1).split())


def test_bundle_lab_names_its_mirror_and_the_ports(tmp_path):
    text = hint(
        tmp_path,
        artifacts_registry_mirrors={
            "registry.k8s.io": "http://10.213.180.1:5005/v2/registry.k8s.io",
            "quay.io": "http://10.213.180.1:5005/v2/quay.io",
        },
    )
    assert "10.213.180.1:5005" in text
    assert "8090" in text
    assert "artifacts.image_registry" not in text


def test_image_registry_lab_names_that_mirror(tmp_path):
    text = hint(tmp_path, artifacts_image_registry="mirror.example:5000")
    assert text == "the mirror mirror.example:5000 (artifacts.image_registry in the lab spec)"


def test_upstream_lab_names_the_registry_and_the_command_the_user_ran(tmp_path):
    text = hint(tmp_path)
    assert text.startswith("registry.k8s.io.")
    assert "inv up --bundle" in text


def test_role_messages_name_no_literal_inv():
    literal = [
        str(p.relative_to(paths.ROOT))
        for p in paths.ROOT.glob("roles/**/tasks/*.yml")
        if re.search(r"\(inv |\binv (up|kubernetes|artifacts|inventory)\b", p.read_text())
    ]
    assert literal == []
