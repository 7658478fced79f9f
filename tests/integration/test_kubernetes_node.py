"""The node side of the Kubernetes stage on a real 2-node local lab, without Kubernetes binaries.

One lab for the module: `up` with prepare, then the kubelet role driven by its tag; checks that
systemd in the node accepts the units, containerd answers through the CRI with the pinned
sandbox image, and what nodes on a shared kernel need (host sysctls, /dev/kmsg, shared /,
own product_uuid) holds, also across a node restart. The last test takes the lab down and
checks the host sysctls are back; the first one, without a lab, restores what an interrupted
lab left.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import cri
import pytest
import yaml
from nodes import ssh

from clusterlab import ansible, paths, stages
from clusterlab.providers import local

pytestmark = pytest.mark.integration

FIXTURE = paths.ROOT / "tests" / "fixtures" / "kubelet-units.yml"
NODES = ("node1", "node2")
UNIT_DIR = "/etc/systemd/system"


def other_labs(*mine: str) -> set[str]:
    return {p.name for p in Path("/sys/class/net").glob("cl-*")} - set(mine)


def test_down_restores_what_an_interrupted_lab_left_on_the_host(labs):
    """Recorded originals (one half-written, one from an older version) and no lab: restored."""
    if other_labs():
        pytest.skip(f"local labs run ({', '.join(sorted(other_labs()))}): sysctls stay set")
    before = local.host_sysctl_values()
    prov = labs.provider(labs.spec("k8sgone", 41, nodes=1, disks=0, rook={"enabled": False}))
    local.RUN_DIR.mkdir(parents=True, exist_ok=True)
    Path("/proc/sys/net/ipv4/ip_forward").write_text("1\n")  # an older version's lab …
    (local.RUN_DIR / "ip_forward.orig").write_text(before["net.ipv4.ip_forward"] + "\n")
    local.set_host_sysctls()  # … then a lab killed before its bridge existed
    (local.SYSCTL_ORIG_DIR / ".vm.panic_on_oom.tmp").write_text("0\n")
    assert local.host_sysctl_values() == local.HOST_SYSCTLS
    assert not (local.RUN_DIR / "ip_forward.orig").exists()
    prov.destroy()
    assert local.host_sysctl_values() == before
    assert not local.SYSCTL_ORIG_DIR.exists()


@pytest.fixture(scope="module")
def lab(module_labs):
    sysctls_before = local.host_sysctl_values()
    # the host's own value: recorded by the first lab of the machine, which may be another one
    recorded = local.SYSCTL_ORIG_DIR / "kernel.panic"
    panic_orig = (
        recorded.read_text().strip() if recorded.exists() else sysctls_before["kernel.panic"]
    )
    spec = module_labs.spec("k8snode", 40, nodes=2, disks=0, rook={"enabled": False})
    prov = module_labs.provider(spec)
    prov.create()
    stages.run_stage(spec, "prepare")
    yield {"spec": spec, "prov": prov, "sysctls_before": sysctls_before, "panic_orig": panic_orig}
    prov.destroy()  # the last test did already, unless a test before it failed


def kubelet_units(lab) -> dict[str, dict[str, int]]:
    prov = lab["prov"]
    return ansible.run_playbook(
        FIXTURE,
        prov.state / "hosts.yml",
        prov.state / "logs" / "kubelet-units.log",
        extra_args=["--tags", "kubelet_units"],
    )


def group_vars(lab) -> dict:
    return yaml.safe_load((lab["prov"].state / "hosts.yml").read_text())["all"]["vars"]


def test_kubelet_units_accepted_by_systemd_and_idempotent(lab):
    prov = lab["prov"]
    first = kubelet_units(lab)
    assert {h: r["changed"] > 0 for h, r in first.items()} == dict.fromkeys(NODES, True)
    second = kubelet_units(lab)
    assert {h: r["changed"] for h, r in second.items()} == dict.fromkeys(NODES, 0)

    for node in NODES:
        # the files, as systemd loaded them: one ExecStart after the drop-in's reset
        show = ssh(
            prov,
            node,
            "systemctl show kubelet -p LoadState -p UnitFileState -p ActiveState "
            "-p FragmentPath -p DropInPaths -p ExecStart -p Environment -p EnvironmentFiles",
        ).stdout
        props: dict[str, str] = {}  # a property listed on several lines: joined by newlines
        for key, _, value in (line.partition("=") for line in show.splitlines()):
            props[key] = f"{props[key]}\n{value}" if key in props else value
        assert props["LoadState"] == "loaded"
        assert props["UnitFileState"] == "enabled"
        assert props["ActiveState"] == "inactive"  # kubeadm starts it, not the role
        assert props["FragmentPath"] == f"{UNIT_DIR}/kubelet.service"
        assert props["DropInPaths"].split() == [
            f"{UNIT_DIR}/kubelet.service.d/10-kubeadm.conf",
            f"{UNIT_DIR}/kubelet.service.d/20-shared-kernel.conf",
        ]
        assert props["ExecStart"].count("path=") == 1
        assert "path=/usr/local/bin/kubelet" in props["ExecStart"]
        for var in ("KUBECONFIG", "CONFIG", "KUBEADM", "EXTRA"):
            assert f"$KUBELET_{var}_ARGS" in props["ExecStart"]
        env = props["Environment"]
        assert "--bootstrap-kubeconfig=/etc/kubernetes/bootstrap-kubelet.conf" in env
        assert "--kubeconfig=/etc/kubernetes/kubelet.conf" in env
        assert "KUBELET_CONFIG_ARGS=--config=/var/lib/kubelet/config.yaml" in env
        assert "CLUSTERLAB_KUBELET_ARGS=--runtime-cgroups=/system.slice/containerd.service" in env
        assert props["EnvironmentFiles"].splitlines() == [
            "/var/lib/kubelet/kubeadm-flags.env (ignore_errors=yes)",
            "/etc/default/kubelet (ignore_errors=yes)",
        ]
        assert ssh(prov, node, "systemctl is-enabled kubelet").stdout.strip() == "enabled"
        assert ssh(
            prov, node, "test -L /etc/systemd/system/multi-user.target.wants/kubelet.service"
        )

        # systemd-analyze verify: the only complaint may be the binary the download role brings
        res = ssh(prov, node, "systemd-analyze verify kubelet.service", check=False)
        complaints = [line for line in res.stderr.splitlines() if line.strip()]
        assert complaints, "verify must at least miss the kubelet binary (not installed here)"
        assert all("/usr/local/bin/kubelet" in line for line in complaints), complaints


def test_crictl_info_systemd_cgroup_and_pinned_sandbox_image(lab):
    prov = lab["prov"]
    for node in NODES:
        sock = f"/proc/{prov.node_init_pid(node)}/root/run/containerd/containerd.sock"
        ver = cri.version(sock)
        assert ver["runtime_name"] == "containerd"
        assert ver["runtime_api_version"] == "v1"
        assert ver["runtime_version"].startswith("1.")  # Debian's containerd 1.6 for ≤ 1.35
        info = cri.info(sock)
        assert info["conditions"]["RuntimeReady"] is True
        config = info["config"]
        assert config["sandboxImage"] == expected_pause_image(lab)
        runc = config["containerd"]["runtimes"]["runc"]
        assert runc["runtimeType"] == "io.containerd.runc.v2"
        assert runc["options"]["SystemdCgroup"] is True


def expected_pause_image(lab) -> str:
    """registry.k8s.io/pause:<the pause release pinned for the lab's Kubernetes version>."""
    releases = yaml.safe_load((paths.ROOT / "roles/common/clusterlab/vars/main.yml").read_text())[
        "clusterlab_kube_releases"
    ]
    return f"registry.k8s.io/pause:{releases[group_vars(lab)['kube_version']]['pause']}"


def test_host_sysctls_hold_while_the_lab_runs(lab):
    assert local.host_sysctl_values() == local.HOST_SYSCTLS
    assert (local.SYSCTL_ORIG_DIR / "kernel.panic").read_text().strip() == lab["panic_orig"]
    # a node sees the host's values (shared kernel) and cannot change them
    out = ssh(lab["prov"], "node1", "sysctl -n vm.overcommit_memory kernel.panic").stdout
    assert out.split() == ["1", "10"]
    res = ssh(lab["prov"], "node1", "sysctl -w kernel.panic=3", check=False)
    assert res.returncode != 0
    assert local.host_sysctl_values()["kernel.panic"] == "10"


def node_profile(prov, node: str) -> dict[str, str]:
    script = (
        "set -e; test -c /dev/kmsg; echo kmsg=$(timeout 5 head -n1 /dev/kmsg | cut -c1-40); "
        "echo propagation=$(findmnt -n -o PROPAGATION /); "
        "echo uuid=$(cat /sys/class/dmi/id/product_uuid); "
        "echo unit=$(systemctl is-active clusterlab-node-profile)"
    )
    out = ssh(prov, node, script).stdout
    return dict(line.split("=", 1) for line in out.splitlines())


def test_shared_kernel_node_profile_survives_a_node_restart(lab):
    prov = lab["prov"]
    before = {n: node_profile(prov, n) for n in NODES}
    for node, p in before.items():
        assert ";" in p["kmsg"], f"{node}: no kernel log record from /dev/kmsg: {p}"
        assert p["propagation"] == "shared"
        assert p["unit"] == "active"
        assert str(uuid.UUID(p["uuid"])) == p["uuid"]
    assert before["node1"]["uuid"] != before["node2"]["uuid"]
    host_uuid = Path("/sys/class/dmi/id/product_uuid")
    if host_uuid.exists():
        assert host_uuid.read_text().strip() not in {p["uuid"] for p in before.values()}

    # a mount made in a node stays in the node, although / is shared there
    ssh(prov, "node1", "mkdir -p /mnt/clprobe && mount -t tmpfs clprobe /mnt/clprobe")
    host_mounts = Path("/proc/mounts").read_text()
    assert "/mnt/clprobe" not in host_mounts
    assert "clusterlab-dmi" not in host_mounts

    # restart node2: same identity, same profile
    prov.stop_node("node2")
    prov.create()
    after = node_profile(prov, "node2")
    assert after == {**before["node2"], "kmsg": after["kmsg"]}
    assert ";" in after["kmsg"]


def test_down_restores_the_host_sysctls(lab):
    if others := other_labs(lab["prov"].bridge):
        pytest.skip(f"other local labs run ({', '.join(sorted(others))}): sysctls stay set")
    lab["prov"].destroy()
    assert local.host_sysctl_values() == lab["sysctls_before"]
    assert not local.SYSCTL_ORIG_DIR.exists()
