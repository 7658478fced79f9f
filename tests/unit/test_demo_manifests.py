"""`clusterlab manifests` writes demos/<name>/ for every demo a meetup lab carries (all seven),
the same files the demo runner applies (one renderer, one inventory), and every object in them
validates: core objects with kubernetes-validate at the lab's minor, ObjectBucketClaims with
Rook's pinned CRD schema, VolumeSnapshot(Class)es by shape (their CRDs are kept nowhere here);
the checks are the per-demo tests' own (test_demos_basic)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from test_cni import validate_all
from test_demos_basic import obc_problems, snapshot_shape

from clusterlab import inventory, paths
from clusterlab.demos import DEMOS, ORDER, runner
from clusterlab.demos.base import render_manifests
from clusterlab.providers import get_provider
from clusterlab.spec import load_spec_file

LABS = ["meetup-host", "meetup-pvc"]


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """lab -> (spec, the folder `clusterlab manifests --lab LAB --out` wrote)."""
    out = {}
    for lab in LABS:
        case = tmp_path_factory.mktemp(lab)
        env = dict(
            os.environ,
            CLUSTERLAB_CACHE=str(case / "cache"),
            CLUSTERLAB_STATE=str(case / "state"),
        )
        res = subprocess.run(
            [
                sys.executable,
                "-m",
                "clusterlab",
                "manifests",
                "--lab",
                lab,
                "--out",
                str(case / "m"),
            ],
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )
        assert res.returncode == 0, res.stderr
        assert "demos/" not in res.stderr, res.stderr  # no demo named as not rendered
        assert not (case / "state").exists(), "manifests created a state dir"
        out[lab] = (load_spec_file(paths.lab_spec_file(lab)), case / "m")
    return out


def test_the_meetup_labs_carry_the_seven_demos_in_the_talk_s_order():
    assert list(DEMOS) == list(ORDER)
    assert len(ORDER) == 7
    for lab in LABS:
        assert load_spec_file(paths.lab_spec_file(lab))["demos"] == list(ORDER)


@pytest.mark.parametrize("lab", LABS)
def test_every_demo_gets_its_folder_with_what_the_runner_applies(written, lab):
    spec, out = written[lab]
    folders = sorted(p.name for p in (out / "demos").iterdir())
    assert folders == sorted(ORDER)
    ctx = runner.context(inventory.render(spec, get_provider(spec).planned_connections()))
    for name in ORDER:
        files = {p.name: p.read_text() for p in (out / "demos" / name).iterdir()}
        assert files, name
        assert files == render_manifests(DEMOS[name], ctx), name


def objects(folder: Path) -> list[tuple[str, dict]]:
    return [
        (f"{p.parent.name}/{p.name}", d)
        for p in sorted(folder.rglob("*.yaml"))
        for d in yaml.safe_load_all(p.read_text())
        if d
    ]


@pytest.mark.parametrize("lab", LABS)
def test_every_written_object_validates(written, lab):
    spec, out = written[lab]
    docs = objects(out / "demos")
    assert {where.split("/")[0] for where, _ in docs} == set(ORDER)
    core = []
    for where, d in docs:
        group = d["apiVersion"].split("/")[0] if "/" in d["apiVersion"] else ""
        if group == "objectbucket.io":
            assert obc_problems(d) == [], where
        elif group == "snapshot.storage.k8s.io":
            assert snapshot_shape(d) == [], where
        else:
            assert "." not in group or group.endswith("k8s.io"), f"{where}: {d['apiVersion']}"
            core.append(d)
    validate_all(core, spec["kubernetes"]["version"])
