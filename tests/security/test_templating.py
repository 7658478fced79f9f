"""Spec and bundle values never become code downstream.

The grammar refuses markup first (test_spec_corpus, test_bundle_index). These tests take a
payload *past* the grammar — put into an already validated spec, as a value the grammar
missed would be — and prove the second line holds: the generated inventory marks the
value `!unsafe`, so Ansible (as root on the controller) never evaluates it, and every
manifest writes it through a serializer, so a newline cannot add a YAML document.
A control run with the same inventory written without the tag shows the payload does run
when it is not marked: the check can fail.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml

from clusterlab import ansible, inventory, manifests, paths
from clusterlab.demos import runner
from clusterlab.demos.base import DemoError
from clusterlab.providers import get_provider
from clusterlab.spec import normalize
from clusterlab.yamltags import Unsafe, plain
from conftest import with_value


def payload(target) -> str:
    return "{{ lookup('pipe', 'id > " + str(target) + "') }}"


@pytest.fixture
def scratch(tmp_path, monkeypatch):
    monkeypatch.setenv("CLUSTERLAB_STATE", str(tmp_path / "state"))
    monkeypatch.setenv("CLUSTERLAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("CLUSTERLAB_INVENTORIES", str(tmp_path / "inventories"))
    return tmp_path


def poisoned_spec(tmp_path) -> tuple[dict, dict]:
    """A valid local lab (net 10.213.173.0/24) whose values then carry payloads; returns the
    spec and field -> (payload file, injected value)."""
    raw = with_value("local", "network.cidr", "10.213.173.0/24")
    raw["name"] = "tdtpl"
    spec = normalize(raw)
    injected = {
        "rook.version": "v1.20.6" + payload(tmp_path / "pwned-version"),
        "rook.data_dir_host_path": "/var/lib/rook"
        + payload(tmp_path / "pwned-datadir")
        + "\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: evil}",
        "artifacts.image_registry": "mirror.example" + payload(tmp_path / "pwned-registry"),
    }
    for field, value in injected.items():
        section, key = field.split(".")
        spec[section][key] = value
    return spec, injected


def pwned(tmp_path) -> list[str]:
    return sorted(p.name for p in tmp_path.glob("pwned-*"))


def test_manifests_render_payloads_as_data_and_one_document(scratch):
    """`clusterlab manifests` (the Rook play, the stage's own templates) over a poisoned
    spec: no payload runs, cephcluster.yaml is one CephCluster whose dataDirHostPath and
    image are the injected text itself."""
    spec, injected = poisoned_spec(scratch)
    out = scratch / "out"
    manifests.render(spec, out, tags=["rook"])
    assert pwned(scratch) == []
    docs = [d for d in yaml.safe_load_all((out / "rook" / "cephcluster.yaml").read_text()) if d]
    assert [d["kind"] for d in docs] == ["CephCluster"]
    assert docs[0]["spec"]["dataDirHostPath"] == injected["rook.data_dir_host_path"]
    image = docs[0]["spec"]["cephVersion"]["image"]
    assert image.startswith(injected["artifacts.image_registry"] + "/ceph/ceph:")
    for name in ("local-storage.yaml", "toolbox.yaml", "operator-settings.yaml"):
        if (out / "rook" / name).exists():
            for doc in yaml.safe_load_all((out / "rook" / name).read_text()):
                assert not doc or doc.get("kind") != "Namespace", name


PLAY = """\
- hosts: all
  gather_facts: false
  tasks:
    - name: Every spec value through a plain template expression
      ansible.builtin.copy:
        content: "{{ [rook_version, rook_data_dir_host_path, artifacts_image_registry] | to_json }}"
        dest: "{{ out }}/{{ inventory_hostname }}.json"
        mode: "0600"
      delegate_to: localhost
"""


def run_play(tmp_path, hosts_yml) -> subprocess.CompletedProcess:
    play = tmp_path / "play.yml"
    play.write_text(PLAY)
    out = tmp_path / "seen"
    out.mkdir(exist_ok=True)
    extra = {
        "out": str(out),
        "ansible_connection": "local",
        "ansible_python_interpreter": sys.executable,
    }
    return subprocess.run(
        [
            ansible.bin_path("ansible-playbook"),
            "-i",
            str(hosts_yml),
            str(play),
            "-e",
            json.dumps(extra),
        ],
        env=ansible.env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )


def test_a_playbook_over_the_generated_inventory_never_runs_a_payload(scratch):
    spec, injected = poisoned_spec(scratch)
    state = paths.state_dir(spec["name"])
    state.mkdir(parents=True)
    hosts = inventory.write(spec, get_provider(spec).planned_connections(), state)
    text = hosts.read_text()
    assert "rook_version: !unsafe " in text
    res = run_play(scratch, hosts)
    assert res.returncode == 0, res.stdout + res.stderr
    assert pwned(scratch) == []
    (seen,) = (scratch / "seen").glob("*.json")
    assert json.loads(seen.read_text()) == [
        injected["rook.version"],
        injected["rook.data_dir_host_path"],
        injected["artifacts.image_registry"],
    ]


def test_control_the_same_inventory_without_the_tag_runs_the_payload(scratch):
    """Without `!unsafe` (the inventory as it was written before), Ansible evaluates the
    values: the payload files appear. This is what the tests above would catch."""
    spec, _ = poisoned_spec(scratch)
    inv = plain(inventory.render(spec, get_provider(spec).planned_connections()))
    hosts = scratch / "plain-hosts.yml"
    hosts.write_text(yaml.safe_dump(inv, sort_keys=False))
    assert "!unsafe" not in hosts.read_text()
    run_play(scratch, hosts)
    assert "pwned-version" in pwned(scratch)


def test_inventory_tags_spec_values_but_not_connection_vars_or_keys(scratch):
    spec, _ = poisoned_spec(scratch)
    inv = inventory.render(spec, get_provider(spec).planned_connections())["all"]
    assert isinstance(inv["vars"]["rook_version"], Unsafe)
    # no tag on empty strings: Ansible 2.19 reads `!unsafe ''` as null (length() then fails)
    assert inv["vars"]["artifacts_mirror_url"] == ""
    assert type(inv["vars"]["artifacts_mirror_url"]) is str
    assert all(isinstance(d, Unsafe) for d in inv["vars"]["clusterlab_demos"])
    (host,) = inv["hosts"].values()
    assert isinstance(host["ip"], Unsafe)
    assert all(isinstance(d, Unsafe) for d in host["lab_disks"])
    assert not isinstance(host["ansible_host"], Unsafe)
    assert not isinstance(host["ansible_user"], Unsafe)
    assert all(not isinstance(k, Unsafe) for k in host["lab_disk_sizes"])
    back = yaml.safe_load(yaml.safe_dump(inv))  # the project's YAML reads and writes the tag
    assert isinstance(back["vars"]["rook_version"], Unsafe)
    assert plain(back) == plain(inv)
    assert type(plain(back)["vars"]["rook_version"]) is str


def test_demo_manifests_write_spec_values_through_a_serializer(scratch):
    """The rook-modes demo's node view mounts rook.data_dir_host_path: a newline in it once
    added a document to the demo's manifests. Now the path is one YAML string."""
    spec, injected = poisoned_spec(scratch)
    spec["demos"] = ["rook-modes"]
    inv = inventory.render(spec, get_provider(spec).planned_connections())
    manifests.render_demos(spec, inv, scratch / "out")
    text = (scratch / "out" / "demos" / "rook-modes" / "node-view.yaml").read_text()
    docs = [d for d in yaml.safe_load_all(text) if d]
    assert [d["kind"] for d in docs] == ["Pod"]
    (volume,) = docs[0]["spec"]["volumes"]
    assert volume["hostPath"]["path"] == injected["rook.data_dir_host_path"]
    (container,) = docs[0]["spec"]["containers"]
    assert container["image"].startswith(injected["artifacts.image_registry"] + "/")
    assert pwned(scratch) == []


@pytest.mark.parametrize("domain", ["cluster.local\nx", "x;id", "cluster.local{{ 1 }}", "UP.local"])
def test_a_dns_domain_that_would_reach_a_demo_script_is_refused(domain, scratch):
    spec, _ = poisoned_spec(scratch)
    inv = inventory.render(spec, get_provider(spec).planned_connections())
    runner.context(inv)  # the lab's own inventory passes
    inv["all"]["vars"]["clusterlab_dns_domain"] = domain
    with pytest.raises(DemoError, match="clusterlab_dns_domain"):
        runner.context(inv)
