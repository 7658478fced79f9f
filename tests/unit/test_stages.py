"""The pipeline table: --until, the playbooks site.yml imports, the role folders per stage."""

from __future__ import annotations

import configparser
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from clusterlab_cli import run_cli

from clusterlab import paths, releases, stages
from clusterlab.providers import ProviderError

pytestmark = pytest.mark.unit

BUILT = [s for s in stages.PIPELINE if s.built]


def names(todo) -> list[str]:
    return [s.name for s in todo]


def test_until_stops_after_the_named_stage():
    assert names(stages.stages_until("provision")) == ["provision"]
    assert names(stages.stages_until("prepare")) == ["provision", "prepare"]
    assert names(stages.stages_until("kubernetes")) == ["provision", "prepare", "kubernetes"]
    assert names(stages.stages_until("rook")) == ["provision", "prepare", "kubernetes", "rook"]
    assert names(stages.stages_until(None)) == names(BUILT)


def test_until_an_unbuilt_stage_is_refused(monkeypatch):
    later = stages.Stage("demos", "meetup demos", "demos.yml", "demos", built=False)
    monkeypatch.setattr(stages, "PIPELINE", (*stages.PIPELINE, later))
    monkeypatch.setitem(stages.STAGES, "demos", later)
    with pytest.raises(stages.NotBuilt, match="not implemented yet: demos"):
        stages.stages_until("demos")
    assert names(stages.stages_until(None)) == names(BUILT)  # an unbuilt stage ends the run


def test_until_an_unknown_stage_names_the_stages():
    with pytest.raises(ProviderError, match="stages: provision, prepare, kubernetes"):
        stages.stages_until("kubernets")


def test_site_imports_every_built_playbook_in_pipeline_order():
    site = yaml.safe_load((paths.PLAYBOOKS / "site.yml").read_text())
    imported = [play["ansible.builtin.import_playbook"] for play in site]
    assert imported == [s.playbook for s in BUILT if s.playbook]
    for playbook in imported:
        assert (paths.PLAYBOOKS / playbook).is_file()


def test_roles_are_grouped_by_stage_and_roles_path_lists_the_folders():
    cfg = configparser.ConfigParser()
    cfg.read(paths.ANSIBLE_CFG)
    roles_path = cfg["defaults"]["roles_path"].split(":")
    stage_dirs = [f"roles/{s.name}" for s in BUILT if s.playbook]
    assert roles_path == ["roles/common", *stage_dirs, "roles/reset"]
    on_disk = sorted(p.name for p in (paths.ROOT / "roles").iterdir() if p.is_dir())
    assert on_disk == sorted(d.split("/")[1] for d in roles_path)
    role_names = [r.name for d in roles_path for r in (paths.ROOT / d).iterdir() if r.is_dir()]
    assert len(role_names) == len(set(role_names)), "role names must be unique across stages"


def test_every_built_stage_has_a_verify_layer_module():
    for s in BUILT:
        if s.layer:
            assert (paths.TESTS_INFRA / stages.LAYERS[s.layer]).is_file()


def test_cli_up_until_unknown_stage_exits_1_and_creates_nothing(tmp_path):
    res = run_cli("up", "--until", "ceph", env_extra={"CLUSTERLAB_STATE": str(tmp_path / "state")})
    assert res.returncode == 1
    assert "unknown stage 'ceph' (stages: provision, prepare, kubernetes, rook)" in res.stderr
    assert not (tmp_path / "state").exists()


def test_a_lab_without_rook_skips_the_stage_and_its_layer(tmp_path, monkeypatch):
    monkeypatch.setenv("CLUSTERLAB_STATE", str(tmp_path))
    spec = {"name": "norook", "rook": {"enabled": False}}
    assert stages.run_stage(spec, "rook") == {}
    assert not stages.done_marker(spec, "rook").exists()
    assert stages.STAGES["rook"].skip(spec) == "rook.enabled is false in the lab spec"
    assert stages.STAGES["rook"].skip({"rook": {"enabled": True}}) is None


def test_marks_and_layers_done(tmp_path, monkeypatch):
    monkeypatch.setenv("CLUSTERLAB_STATE", str(tmp_path))
    spec = {"name": "lab1"}
    assert stages.layers_done(spec) == []
    stages.mark_done(spec, "prepare")
    stages.mark_done(spec, "kubernetes")
    assert stages.layers_done(spec) == ["nodes", "kubernetes"]
    stages.clear_done_after(spec, "prepare")
    assert stages.layers_done(spec) == ["nodes"]


def test_docs_pipeline_table_is_the_pipeline():
    assert stages.pipeline_markdown() in (paths.ROOT / "docs" / "stages.md").read_text()


def test_defaults_role_falls_back_to_the_spec_default_release():
    """Plays run without a lab inventory (render fixtures) use the spec's default version."""
    text = (paths.ROOT / "roles" / "common" / "clusterlab" / "defaults" / "main.yml").read_text()
    fallbacks = set(re.findall(r"kube_version \| default\('([0-9.]+)'\)", text))
    assert fallbacks == {releases.default_version()}


def test_docs_list_the_pinned_releases():
    assert releases.releases_markdown() in (paths.ROOT / "docs" / "stages.md").read_text()


def test_every_pinned_release_has_three_sha256_and_its_minor_once():
    table = releases.kube_releases()
    minors = [v.split(".")[1] for v in table]
    assert len(minors) == len(set(minors)), "one pinned patch per minor"
    for version, entry in table.items():
        for binary in ("kubeadm", "kubelet", "kubectl"):
            assert re.fullmatch(r"[0-9a-f]{64}", entry[binary]), (version, binary)
        assert re.fullmatch(r"[0-9a-f]{64}", entry["crictl"]["sha256"]), version
        assert entry["crictl"]["version"].split(".")[:2] == version.split(".")[:2]


def test_the_demos_layer_runs_only_when_a_demo_ran(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CLUSTERLAB_STATE", str(tmp_path))
    spec = {"name": "lab1", "nodes": []}
    (tmp_path / "lab1").mkdir()
    (tmp_path / "lab1" / "hosts.yml").write_text("all: {}\n")
    assert (paths.TESTS_INFRA / stages.LAYERS["demos"]).is_file()
    with pytest.raises(ProviderError, match="nothing to check on lab lab1"):
        stages.verify(spec, ["demos"])  # a verify that checked nothing says so, and fails
    assert "verify demos: skipped (no demo has run on this lab" in capsys.readouterr().err
    ran = []
    monkeypatch.setattr(stages.subprocess, "call", lambda cmd, **kw: ran.append(cmd) or 0)
    (tmp_path / "lab1" / "demos").mkdir()
    (tmp_path / "lab1" / "demos" / "pv-pvc.done").write_text("{}\n")
    stages.verify(spec, ["demos"])
    assert str(paths.TESTS_INFRA / "test_demos.py") in ran[0]
    stages.mark_done(spec, "prepare")
    stages.clear_done_after(spec, "prepare")  # reset: the demos' objects went with the cluster
    assert not (tmp_path / "lab1" / "demos" / "pv-pvc.done").exists()


def test_ansible_commands_resolve_from_the_tools_own_environment_without_it_on_path(tmp_path):
    """As pipx (or a venv used without activating it) runs clusterlab: the environment's bin/
    is not on PATH. `verify` failed there: testinfra runs `ansible-inventory` by name."""
    code = (
        "import shutil; from clusterlab import ansible; e = ansible.env(); "
        "print(shutil.which('ansible-inventory', path=e['PATH'])); "
        "print(shutil.which('ansible-playbook', path=e['PATH']))"
    )
    res = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env={**os.environ, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
    )
    here = Path(sys.executable).parent
    assert res.stdout.split() == [str(here / "ansible-inventory"), str(here / "ansible-playbook")]
