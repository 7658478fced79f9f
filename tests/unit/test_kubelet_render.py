"""The kubelet role's unit and drop-ins as rendered for each OS family."""

from __future__ import annotations

import configparser

import pytest
from localplay import local_inventory, run_playbook

from clusterlab import paths

FIXTURE = paths.ROOT / "tests" / "fixtures" / "render-kubelet.yml"


def render(tmp_path, family: str, **more) -> dict[str, str]:
    out = tmp_path / "out"
    out.mkdir()
    extra = {"out_dir": str(out), "clusterlab_os_family": family, **more}
    res = run_playbook(FIXTURE, local_inventory(tmp_path), extra)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr
    return {f.name: f.read_text() for f in out.iterdir()}


def service(text: str) -> dict[str, list[str]]:
    """[Service] settings of a unit file, every value of a repeated key in order."""
    values: dict[str, list[str]] = {}
    section = ""
    for line in text.splitlines():
        if line.startswith("["):
            section = line
        elif section == "[Service]" and "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values.setdefault(key, []).append(value)
    return values


@pytest.mark.parametrize(
    ("family", "bin_dir", "defaults_file"),
    [
        ("debian", "/usr/local/bin", "/etc/default/kubelet"),
        ("redhat", "/usr/local/bin", "/etc/sysconfig/kubelet"),
        ("fedora_coreos", "/usr/local/bin", "/etc/sysconfig/kubelet"),
        ("flatcar", "/opt/bin", "/etc/default/kubelet"),
    ],
)
def test_units_per_family(tmp_path, family, bin_dir, defaults_file):
    files = render(tmp_path, family)
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.read_string(files["kubelet.service"])
    assert unit["Service"]["ExecStart"] == f"{bin_dir}/kubelet"
    assert unit["Install"]["WantedBy"] == "multi-user.target"
    assert "containerd.service" in unit["Unit"]["After"]

    dropin = service(files["10-kubeadm.conf"])
    assert dropin["ExecStart"][0] == ""  # resets the unit's ExecStart before replacing it
    assert dropin["ExecStart"][1].split()[0] == f"{bin_dir}/kubelet"
    assert dropin["EnvironmentFile"] == [
        "-/var/lib/kubelet/kubeadm-flags.env",
        f"-{defaults_file}",
    ]
    # every variable the command line expands is defined by a drop-in or an environment file
    args = dropin["ExecStart"][1].split()[1:]
    assert args == [
        "$KUBELET_KUBECONFIG_ARGS",
        "$KUBELET_CONFIG_ARGS",
        "$KUBELET_KUBEADM_ARGS",  # kubeadm-flags.env
        "$CLUSTERLAB_KUBELET_ARGS",  # 20-shared-kernel.conf (local nodes)
        "$KUBELET_EXTRA_ARGS",  # the distribution's defaults file
    ]
    env = " ".join(dropin["Environment"])
    assert "KUBELET_CONFIG_ARGS=--config=/var/lib/kubelet/config.yaml" in env
    assert "--bootstrap-kubeconfig=/etc/kubernetes/bootstrap-kubelet.conf" in env


def test_shared_kernel_dropin_names_the_runtime_cgroup(tmp_path):
    files = render(tmp_path, "debian")
    assert service(files["20-shared-kernel.conf"])["Environment"] == [
        '"CLUSTERLAB_KUBELET_ARGS=--runtime-cgroups=/system.slice/containerd.service"'
    ]
