"""What the prepare roles decide and render for OS families that cannot boot here."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from clusterlab import ansible, paths

FIXTURE = paths.ROOT / "tests" / "fixtures" / "render-prepare.yml"


def render(tmp_path, family: str, kube_version: str = "1.35.8") -> dict:
    out = tmp_path / "out"
    out.mkdir()
    inv = tmp_path / "inv.yml"
    inv.write_text(
        "all:\n  hosts:\n    render:\n      ansible_connection: local\n"
        f"      ansible_python_interpreter: {sys.executable}\n"
    )
    extra = {"out_dir": str(out), "clusterlab_os_family": family, "kube_version": kube_version}
    res = subprocess.run(
        [
            ansible.bin_path("ansible-playbook"),
            "-i",
            str(inv),
            str(FIXTURE),
            "-e",
            json.dumps(extra),
        ],
        env=ansible.env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr
    data = json.loads((out / "decisions.json").read_text())
    data["config"] = (out / "config.toml").read_text()
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


def test_debian_with_kubernetes_136_downloads_containerd_2(tmp_path):
    d = render(tmp_path, "debian", "1.36.4")
    assert d["source"] == "download"
    assert d["containerd_major"] == 2
    assert "version = 3" in d["config"]
    assert 'plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options' in d["config"]
    assert 'bin_dirs = ["/opt/cni/bin"]' in d["config"]


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
    assert d["download_dests"]["containerd"] == "/usr/local"


def test_flatcar_keeps_binaries_in_opt_bin(tmp_path):
    d = render(tmp_path, "flatcar")
    assert d["bin_dir"] == "/opt/bin"
    assert d["download_dests"]["containerd"] == "/opt"  # the archive holds bin/
    assert d["download_dests"]["crictl"] == "/opt/bin"
    assert d["timesync_package"] == ""  # no package manager
    assert "PATH=/opt/bin:" in d["unit"]


def test_fedora_coreos_layers_nothing_for_time(tmp_path):
    d = render(tmp_path, "fedora_coreos")
    assert d["timesync_package"] == ""
    assert d["timesync_service"] == "chronyd"
