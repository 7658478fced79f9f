"""The external-snapshotter pin: download entries, the Rook stage's fetch play, the image swap."""

from __future__ import annotations

import re

import pytest
import yaml
from localplay import local_inventory, run_playbook

from clusterlab import paths

pytestmark = pytest.mark.unit

TAG = "v8.5.0"  # Rook v1.20.6's csi-snapshotter sidecar
REPO = f"https://raw.githubusercontent.com/kubernetes-csi/external-snapshotter/{TAG}/"
ROLE = paths.ROOT / "roles" / "rook" / "snapshot_controller"
CRDS = ("volumesnapshotclasses", "volumesnapshotcontents", "volumesnapshots")


def load(path):
    return yaml.safe_load(path.read_text())


def role_entries() -> list[str]:
    defaults = load(ROLE / "defaults" / "main.yml")
    return defaults["snapshot_controller_crds"] + defaults["snapshot_controller_manifests"]


def test_download_entries_are_pinned_to_the_snapshotter_tag():
    table = load(paths.ROOT / "roles" / "common" / "download" / "defaults" / "main.yml")[
        "download_table"
    ]
    names = role_entries()
    assert len(names) == 5
    for name in names:
        entry = table[name]
        assert entry["version"] == TAG, name
        assert entry["url"].startswith(REPO), entry["url"]
        assert re.fullmatch(r"[0-9a-f]{64}", entry["sha256"]), name
        assert entry["mode"] == "0644"
        assert "dest" not in entry  # controller cache only
    crd_urls = [
        table[n]["url"] for n in load(ROLE / "defaults" / "main.yml")["snapshot_controller_crds"]
    ]
    assert [u.rsplit("/", 1)[1] for u in crd_urls] == [
        f"snapshot.storage.k8s.io_{c}.yaml" for c in CRDS
    ]


def test_rook_stage_fetches_them_and_installs_the_controller_before_the_cluster():
    plays = load(paths.ROOT / "playbooks" / "rook.yml")
    fetch = next(p for p in plays if "download" in p.get("tags", []))
    items = fetch["tasks"][0]["vars"]["download_items"]
    assert set(role_entries()) <= set(items)
    roles = [r["role"] for p in plays for r in p.get("roles", []) if r["role"] != "clusterlab"]
    assert roles.index("rook_operator") < roles.index("snapshot_controller")
    assert roles.index("snapshot_controller") < roles.index("ceph_cluster")


def test_the_deployment_gets_the_pinned_image_and_nothing_else_changes(tmp_path):
    """The role's own check and replacement expressions, evaluated by Ansible."""
    tasks = load(ROLE / "tasks" / "main.yml")
    check = next(t for t in tasks if t["name"].startswith("Check that upstream"))
    apply = next(
        t for t in tasks if t["name"].startswith("Apply the snapshot-controller's Deployment")
    )
    text = (
        "kind: Deployment\nspec:\n  template:\n    spec:\n      containers:\n"
        "        - name: snapshot-controller\n"
        "          image: registry.k8s.io/sig-storage/snapshot-controller:v8.4.0\n"
        "          imagePullPolicy: IfNotPresent\n"
    )
    out = tmp_path / "out.yaml"
    play = [
        {
            "hosts": "all",
            "gather_facts": False,
            "vars_files": [str(ROLE / "vars" / "main.yml")],
            "vars": {
                "snapshot_controller_setup_text": text,
                "snapshot_controller_image": "mirror.test:5000/sig-storage/snapshot-controller:v8.5.0",
                "replaced": apply["vars"]["kubectl_apply_text"],
            },
            "tasks": [
                {
                    "name": "Check",
                    "ansible.builtin.assert": {"that": check["ansible.builtin.assert"]["that"]},
                },
                {
                    "name": "Write",
                    "ansible.builtin.copy": {
                        "content": "{{ replaced }}",
                        "dest": str(out),
                        "mode": "0644",
                    },
                },
            ],
        }
    ]
    playbook = tmp_path / "play.yml"
    playbook.write_text(yaml.safe_dump(play))
    result = run_playbook(playbook, local_inventory(tmp_path), {})
    assert result.returncode == 0, result.stdout + result.stderr
    assert (
        out.read_text().strip()
        == text.replace(
            "registry.k8s.io/sig-storage/snapshot-controller:v8.4.0",
            "mirror.test:5000/sig-storage/snapshot-controller:v8.5.0",
        ).strip()
    )
