"""Cluster access from the controller (kubeconfig, kubectl) and the manifests command."""

from __future__ import annotations

import os
import subprocess

import pytest
import yaml
from clusterlab_cli import run_cli

from clusterlab import access, paths, releases
from clusterlab.spec import load_spec_file

pytestmark = pytest.mark.unit


def cli(*args: str, tmp_path, cwd=None) -> subprocess.CompletedProcess:
    env = {
        "CLUSTERLAB_STATE": str(tmp_path / "state"),
        "CLUSTERLAB_CACHE": str(tmp_path / "cache"),  # downloads land here, not the user's cache
    }
    return run_cli(*args, env_extra=env, cwd=cwd)


@pytest.mark.parametrize(
    "task", [["kubeconfig"], ["kubectl", "--", "get", "nodes"], ["ceph", "--", "status"]]
)
def test_no_cluster_yet_is_a_clear_error(task, tmp_path):
    res = cli(task[0], "--lab", "default", *task[1:], tmp_path=tmp_path)
    assert res.returncode == 1
    assert "has no kubeconfig" in res.stderr
    assert "the kubernetes stage has not completed" in res.stderr
    assert not (tmp_path / "state").exists()


def test_kubectl_is_the_download_mechanisms_cached_file():
    spec = load_spec_file(paths.lab_spec_file("default"))
    version = spec["kubernetes"]["version"]
    path = access.kubectl_path(spec)
    assert path.parts[-3:] == ("kubectl", version, "kubectl")
    assert str(path).startswith(os.path.expanduser(spec["artifacts"]["cache_dir"]))
    assert len(releases.kube_releases()[version]["kubectl"]) == 64


def test_kubectl_with_a_wrong_checksum_is_refused(tmp_path):
    spec = load_spec_file(paths.lab_spec_file("default"))
    spec["artifacts"]["cache_dir"] = str(tmp_path / "cache")
    fake = access.kubectl_path(spec)
    fake.parent.mkdir(parents=True)
    fake.write_text("#!/bin/sh\necho pretending\n")
    with pytest.raises(access.ProviderError, match="does not match its pinned sha256"):
        access.ensure_kubectl(spec)


def test_manifests_command_writes_kubeadm_documents_per_node(tmp_path):
    out = tmp_path / "out"
    res = cli("manifests", "--lab", "default", "--out", str(out), tmp_path=tmp_path)
    assert res.returncode == 0, res.stderr
    spec = load_spec_file(paths.lab_spec_file("default"))
    for node in spec["nodes"]:
        docs = list(yaml.safe_load_all((out / "kubeadm" / f"{node['name']}.yaml").read_text()))
        assert docs, node["name"]
    assert not (tmp_path / "state").exists()  # nothing of the lab was created
    # the pod network: rendered where its upstream manifest can be downloaded, else said so
    if not (out / "cni" / "calico.yaml").is_file():
        assert "warning: not rendered: cni/: needs https://" in res.stderr
        assert "MISSING.txt" not in res.stdout


def test_ceph_runs_in_the_rook_toolbox():
    assert access.toolbox_exec(["osd", "tree"]) == [
        "-n",
        "rook-ceph",
        "exec",
        "deploy/rook-ceph-tools",
        "--",
        "ceph",
        "osd",
        "tree",
    ]
