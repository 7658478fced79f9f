"""What the prepare roles decide and render for OS families that cannot boot here."""

from __future__ import annotations

import json
import tomllib

import pytest
from localplay import local_inventory, run_playbook

from clusterlab import paths

FIXTURE = paths.ROOT / "tests" / "fixtures" / "render-prepare.yml"


def render(tmp_path, family: str, kube_version: str = "1.35.8", **more) -> dict:
    out = tmp_path / "out"
    out.mkdir()
    extra = {
        "out_dir": str(out),
        "clusterlab_os_family": family,
        "kube_version": kube_version,
        **more,
    }
    res = run_playbook(FIXTURE, local_inventory(tmp_path), extra)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr
    data = json.loads((out / "decisions.json").read_text())
    data["config"] = (out / "config.toml").read_text()
    data["toml"] = tomllib.loads(data["config"])
    data["unit"] = (out / "containerd.service").read_text()
    return data


def test_debian_uses_distro_containerd_1(tmp_path):
    d = render(tmp_path, "debian")
    assert d["source"] == "distro"
    assert d["containerd_major"] == 1
    assert d["cni_bin_dir"] == "/usr/lib/cni"
    assert "version = 2" in d["config"]
    assert 'plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options' in d["config"]
    assert "SystemdCgroup = true" in d["config"]
    assert d["timesync_service"] == "systemd-timesyncd"
    cri = d["toml"]["plugins"]["io.containerd.grpc.v1.cri"]
    assert cri["sandbox_image"] == "registry.k8s.io/pause:3.10.1"  # kubeadm 1.35's pause
    assert cri["containerd"]["runtimes"]["runc"]["options"]["SystemdCgroup"] is True


def test_debian_with_kubernetes_136_downloads_containerd_2(tmp_path):
    d = render(tmp_path, "debian", "1.36.4")
    assert d["source"] == "download"
    assert d["containerd_major"] == 2
    assert "version = 3" in d["config"]
    assert 'plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options' in d["config"]
    assert 'bin_dirs = ["/opt/cni/bin"]' in d["config"]
    plugins = d["toml"]["plugins"]
    assert plugins["io.containerd.cri.v1.images"]["pinned_images"]["sandbox"] == (
        "registry.k8s.io/pause:3.10.2"  # kubeadm 1.36's pause
    )
    assert "io.containerd.grpc.v1.cri" not in plugins  # the 1.x section would be ignored


@pytest.mark.parametrize(
    ("kube_version", "pause"), [("1.31.14", "3.10"), ("1.34.11", "3.10.1"), ("1.35.8", "3.10.1")]
)
def test_containerd_1_sandbox_image_follows_the_kubernetes_version(tmp_path, kube_version, pause):
    d = render(tmp_path, "debian", kube_version)
    assert d["containerd_major"] == 1
    sandbox = d["toml"]["plugins"]["io.containerd.grpc.v1.cri"]["sandbox_image"]
    assert sandbox == f"registry.k8s.io/pause:{pause}"


def test_sandbox_image_comes_from_the_mirror_registry(tmp_path):
    d = render(tmp_path, "redhat", "1.36.4", artifacts_image_registry="mirror.lab:5000/k8s")
    pinned = d["toml"]["plugins"]["io.containerd.cri.v1.images"]["pinned_images"]
    assert pinned["sandbox"] == "mirror.lab:5000/k8s/pause:3.10.2"


@pytest.mark.parametrize("family", ["redhat", "flatcar", "fedora_coreos"])
def test_non_debian_families_download_containerd_2(tmp_path, family):
    d = render(tmp_path, family)
    assert d["source"] == "download"
    assert d["containerd_major"] == 2
    assert "SystemdCgroup = true" in d["config"]
    assert f"ExecStart={d['bin_dir']}/containerd" in d["unit"]
    assert d["download_dests"]["runc"] == f"{d['bin_dir']}/runc"


def test_redhat_family_choices(tmp_path):
    d = render(tmp_path, "redhat")
    assert d["bin_dir"] == "/usr/local/bin"
    assert d["timesync_package"] == "chrony"
    assert d["timesync_service"] == "chronyd"
    assert "python3-libselinux" in d["redhat_packages"]
    assert {"conntrack-tools", "socat", "iptables-nft"} <= set(d["kube_packages"])
    assert d["download_dests"]["containerd"] == "/usr/local"


def test_flatcar_keeps_binaries_in_opt_bin(tmp_path):
    d = render(tmp_path, "flatcar")
    assert d["bin_dir"] == "/opt/bin"
    assert d["download_dests"]["containerd"] == "/opt"  # the archive holds bin/
    assert d["download_dests"]["crictl"] == "/opt/bin"
    assert d["timesync_package"] == ""  # no package manager
    assert d["kube_packages"] == []  # the image ships conntrack, socat, iptables
    assert "PATH=/opt/bin:" in d["unit"]


def test_fedora_coreos_layers_nothing_for_time(tmp_path):
    d = render(tmp_path, "fedora_coreos")
    assert d["timesync_package"] == ""
    assert d["timesync_service"] == "chronyd"
