"""A bundle's index.json is data from a stranger too: its image references (the
distribution reference grammar), file URLs (http/https), paths (inside files/ or images/),
sha256 sums and digests are checked before any of it is used; one bad entry refuses the
bundle, naming the entry, exit 2, before anything is created."""

from __future__ import annotations

import json
import os

import pytest

from clusterlab import bundle
from conftest import with_value

FILE = "/tmp/clusterlab-td-bundle-pwned"
HEX = "ab" * 32
GOOD_FILE = (
    "https://dl.k8s.io/release/v1.35.0/bin/linux/amd64/kubeadm",
    {
        "path": "files/dl.k8s.io/release/v1.35.0/bin/linux/amd64/kubeadm",
        "sha256": HEX,
        "size": 1,
    },
)
GOOD_IMAGE = (
    "registry.k8s.io/pause:3.10.1",
    {
        "path": "images/registry.k8s.io/pause/3.10.1.tar",
        "digest": "sha256:" + HEX,
        "pinned": None,
        "sha256": HEX,
        "size": 1,
    },
)


def index(files=None, images=None, **extra) -> dict:
    return {
        "format": bundle.FORMAT,
        "files": dict([GOOD_FILE]) if files is None else files,
        "images": dict([GOOD_IMAGE]) if images is None else images,
        **extra,
    }


def write(tmp_path, data) -> os.PathLike:
    path = tmp_path / "bundle"
    path.mkdir(exist_ok=True)
    (path / "index.json").write_text(json.dumps(data))
    return path


def image(ref: str, **entry) -> dict:
    return {"images": {ref: {**GOOD_IMAGE[1], **entry}}}


def file(url: str, **entry) -> dict:
    return {"files": {url: {**GOOD_FILE[1], **entry}}}


PAYLOAD = "{{ lookup('pipe','id > " + FILE + "') }}"
BAD = {
    "image-jinja": (image("registry.k8s.io/pause:3.10.1" + PAYLOAD), "images["),
    "image-jinja-host": (image("reg{{ 7*7 }}.io/pause:1"), "images["),
    "image-newline": (image("registry.k8s.io/pause:3.10.1\nx"), "images["),
    "image-upper-path": (image("registry.k8s.io/Pause:1"), "not a full image reference"),
    "image-no-tag": (image("registry.k8s.io/pause"), "not a full image reference"),
    "image-no-host": (image("pause:1"), "not a full image reference"),
    "image-shell": (image("registry.k8s.io/pause:1;id"), "not a full image reference"),
    "image-space": (image("registry.k8s.io/pause :1"), "not a full image reference"),
    "image-path-abs": (image("registry.k8s.io/pause:1", path="/etc/shadow"), ".path"),
    "image-path-dotdot": (image("registry.k8s.io/pause:1", path="images/../../x"), ".path"),
    "image-path-files": (image("registry.k8s.io/pause:1", path="files/x"), ".path"),
    "image-path-missing": (image("registry.k8s.io/pause:1", path=None), ".path"),
    "image-digest": (image("registry.k8s.io/pause:1", digest="sha256:0"), ".digest"),
    "image-digest-jinja": (image("registry.k8s.io/pause:1", digest=PAYLOAD), "template markup"),
    "image-pinned": (image("registry.k8s.io/pause:1", pinned="md5:00"), ".pinned"),
    "image-sha256": (image("registry.k8s.io/pause:1", sha256="xyz"), ".sha256"),
    "file-scheme": (file("file:///etc/passwd"), "not an http:// or https:// URL"),
    "file-ftp": (file("ftp://mirror.example/x"), "not an http:// or https:// URL"),
    "file-javascript": (file("javascript:alert(1)"), "not an http:// or https:// URL"),
    "file-jinja": (file("https://dl.k8s.io/x" + PAYLOAD), "template markup"),
    "file-path-abs": (file("https://dl.k8s.io/x", path="/etc/passwd"), ".path"),
    "file-path-dotdot": (file("https://dl.k8s.io/x", path="files/../../../etc"), ".path"),
    "file-path-images": (file("https://dl.k8s.io/x", path="images/x.tar"), ".path"),
    "file-sha256": (file("https://dl.k8s.io/x", sha256=None), ".sha256"),
    "entry-not-object": ({"images": {"registry.k8s.io/pause:1": "x"}}, "expected an object"),
    "section-not-object": ({"files": ["x"]}, "files: expected an object"),
    "extra-jinja": ({"note": PAYLOAD}, "template markup"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_a_bad_entry_refuses_the_bundle_naming_it(case, tmp_path):
    change, words = BAD[case]
    path = write(tmp_path, index(**change))
    with pytest.raises(bundle.BundleIndexError) as exc:
        bundle.read_index(path)
    assert any(words in p for p in exc.value.problems), exc.value.problems
    assert all(str(path / "index.json") in p for p in exc.value.problems)
    assert not os.path.exists(FILE)


def test_the_index_clusterlab_writes_passes(tmp_path):
    path = write(tmp_path, index())
    assert bundle.read_index(path)["images"] == dict([GOOD_IMAGE])
    bundle.write_index(path, bundle.read_index(path))  # its own writer's output reads back
    assert bundle.read_index(path)["files"] == dict([GOOD_FILE])


@pytest.mark.parametrize("command", ["manifests", "up"])
def test_the_command_line_refuses_a_hostile_bundle_before_creating_anything(
    command, project, tmp_path, untouched_host
):
    """An image reference carrying a pipe lookup reached artifacts_registry_mirrors and ran
    as root on `manifests`. Now: exit 2 naming the entry; nothing created; FILE absent."""
    bundle_dir = write(tmp_path, index(**image("registry.k8s.io/pause:3.10.1" + PAYLOAD)))
    raw = with_value("local", "artifacts.bundle", str(bundle_dir))
    raw["name"] = "tdbundle"
    project.write(raw)
    args = [command, "--lab", "tdbundle"]
    if command == "manifests":
        args += ["--out", str(project.root / "out")]
    res = project.cli(*args)
    assert res.returncode == 2, (res.stdout, res.stderr)
    assert 'index.json: images["registry.k8s.io/pause:3.10.1{{' in res.stderr, res.stderr
    assert "template markup" in res.stderr
    assert project.created() == [], project.created()
    assert not os.path.exists(FILE)
