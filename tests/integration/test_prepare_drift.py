"""Prepare's fast path is honest: on a prepared lab, one thing the stage guarantees is changed on
one node, and the next prepare notices it and repairs it (or refuses it); a pure re-run reports
changed=0 and runs none of the roles' tasks.

One 2-node lab is shared by the cases of this module (prepared once); each case leaves the lab
converged again for the next.
"""

from __future__ import annotations

import pytest
from nodes import disks, ssh

from clusterlab import stages
from clusterlab.ansible import AnsibleError

APPLY_TASK = "Bring the node to the guaranteed state"


@pytest.fixture(scope="module")
def lab(module_labs):
    spec = module_labs.spec("spddrift", 142, nodes=2, disks=1)
    prov = module_labs.provider(spec)
    prov.create()
    first = stages.run_stage(spec, "prepare")
    assert all(r["changed"] > 0 and r["failed"] == 0 for r in first.values())
    yield spec, prov
    prov.destroy()


def last_run(prov) -> str:
    """The output of the newest prepare run in the stage's log."""
    return (prov.state / "logs" / "prepare.log").read_text().rsplit("$ ", 1)[-1]


def applied_on(prov) -> dict[str, set[str]]:
    """Role -> the nodes on which the newest run included the role's full tasks."""
    out: dict[str, set[str]] = {}
    role = None
    for block in last_run(prov).split("\nTASK [")[1:]:
        head, _, body = block.partition("]")
        if head.endswith(APPLY_TASK):
            role = head.split(" : ")[0]
            out[role] = {  # "included: /…/apply.yml for node1, node2"
                host.strip()
                for line in body.splitlines()
                if line.startswith("included: ")
                for host in line.split(" for ", 1)[1].split(",")
            }
    return out


def changed_nodes(result: dict) -> set[str]:
    return {host for host, r in result.items() if r["changed"] > 0}


def changes(result: dict) -> dict[str, int]:
    return {host: r["changed"] for host, r in result.items()}


def test_pure_rerun_changes_nothing_and_runs_no_role_task(lab):
    spec, prov = lab
    again = stages.run_stage(spec, "prepare")
    assert changes(again) == {"node1": 0, "node2": 0}
    assert applied_on(prov) == {"node_prep": set(), "container_runtime": set()}


def test_edited_sysctl_file_and_value_are_repaired(lab):
    spec, prov = lab
    conf = "/etc/sysctl.d/99-clusterlab-net.conf"
    ssh(prov, "node2", f"sed -i 's/^net.ipv4.ip_forward = 1/net.ipv4.ip_forward = 0/' {conf}")
    ssh(prov, "node2", "sysctl -qw net.ipv4.ip_forward=0")
    result = stages.run_stage(spec, "prepare")
    assert changed_nodes(result) == {"node2"}
    assert applied_on(prov)["node_prep"] == {"node2"}
    assert "net.ipv4.ip_forward = 1" in ssh(prov, "node2", f"cat {conf}").stdout
    assert ssh(prov, "node2", "sysctl -n net.ipv4.ip_forward").stdout.strip() == "1"


def test_stopped_containerd_is_started(lab):
    spec, prov = lab
    ssh(prov, "node1", "systemctl stop containerd")
    result = stages.run_stage(spec, "prepare")
    assert changed_nodes(result) == {"node1"}
    assert applied_on(prov)["container_runtime"] == {"node1"}
    assert ssh(prov, "node1", "systemctl is-active containerd").stdout.strip() == "active"
    assert ssh(prov, "node1", "ctr version", check=False).returncode == 0


def test_edited_containerd_config_is_restored_and_applied(lab):
    spec, prov = lab
    before = ssh(prov, "node2", "cat /etc/containerd/config.toml").stdout
    ssh(
        prov,
        "node2",
        "sed -i 's/SystemdCgroup = true/SystemdCgroup = false/' /etc/containerd/config.toml",
    )
    pid = ssh(prov, "node2", "systemctl show -p MainPID --value containerd").stdout.strip()
    result = stages.run_stage(spec, "prepare")
    assert changed_nodes(result) == {"node2"}
    assert ssh(prov, "node2", "cat /etc/containerd/config.toml").stdout == before
    after = ssh(prov, "node2", "systemctl show -p MainPID --value containerd").stdout.strip()
    assert after != pid, "containerd was not restarted to apply its restored config"


def test_removed_package_is_installed_again(lab):
    spec, prov = lab
    ssh(prov, "node1", "dpkg --remove socat >/dev/null")
    result = stages.run_stage(spec, "prepare")
    assert changed_nodes(result) == {"node1"}
    assert ssh(prov, "node1", "command -v socat", check=False).returncode == 0


def test_data_disk_with_a_filesystem_is_refused(lab):
    spec, prov = lab
    (dev,) = disks(prov, "node2")
    ssh(prov, "node2", f"mkfs.ext4 -q -F {dev}")
    try:
        with pytest.raises(AnsibleError) as exc:
            stages.run_stage(spec, "prepare")
        assert f"{dev} on node2 is not a usable Ceph data disk: it carries signatures: ext4" in str(
            exc.value
        )
    finally:
        ssh(prov, "node2", f"wipefs --all --quiet {dev}")
    assert changes(stages.run_stage(spec, "prepare")) == {"node1": 0, "node2": 0}
