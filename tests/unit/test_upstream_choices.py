"""Choices where upstream's requirements decide the default; the other way stays explicit."""

from __future__ import annotations

import pytest
import yaml

from clusterlab import paths

pytestmark = pytest.mark.unit
NODE_PREP = paths.ROOT / "roles" / "prepare" / "node_prep"


def load(path):
    return yaml.safe_load(path.read_text())


def test_firewalld_is_disabled_by_default_and_open_stays_a_choice():
    """Calico's requirements (and Kubespray) disable firewalld: pod traffic on cali*,
    vxlan.calico and flannel.1 is in no zone and gets rejected (kubernetes/kubernetes#97283)."""
    defaults = load(NODE_PREP / "defaults" / "main.yml")
    assert defaults["node_prep_firewalld_mode"] == "disable"
    spec = load(NODE_PREP / "meta" / "argument_specs.yml")["argument_specs"]["main"]["options"]
    option = spec["node_prep_firewalld_mode"]
    assert option["default"] == "disable"
    assert set(option["choices"]) == {"open", "disable", "ignore"}
    tasks = {t["name"]: t for t in load(NODE_PREP / "tasks" / "0060-redhat.yml")}
    stop = tasks["Stop and disable firewalld"]
    # a RHEL image without firewalld: nothing to stop, no failure
    assert any("firewalld.service" in cond for cond in stop["when"])
    assert any(
        "'open'" in cond
        for cond in tasks["Open the Kubernetes and Ceph ports in firewalld"]["when"]
    )
