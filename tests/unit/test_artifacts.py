"""The artifact list (`inv artifacts list`) against the tables and playbooks the stages use."""

from __future__ import annotations

import json
import re
import subprocess

import pytest
import yaml
from clusterlab_cli import run_cli

from clusterlab import artifacts, bundle, paths, releases
from clusterlab.spec import load_spec_file, normalize

LABS = paths.known_labs()


def lab(name: str) -> dict:
    return load_spec_file(paths.lab_spec_file(name))


def local(**over) -> dict:
    raw = {
        "name": "arts",
        "provider": "local",
        "os": "debian12",
        "network": {"cidr": "10.213.3.0/24"},
        "nodes": {"count": 1, "disks": [{"size": "5G"}]},
        **over,
    }
    return normalize(raw)


def refs(arts: artifacts.Artifacts) -> set[str]:
    return {i.ref for i in arts.images}


def test_normalize_ref():
    assert artifacts.normalize_ref("busybox") == "docker.io/library/busybox:latest"
    assert artifacts.normalize_ref("redis:7") == "docker.io/library/redis:7"
    assert artifacts.normalize_ref("rook/ceph:v1") == "docker.io/rook/ceph:v1"
    assert artifacts.normalize_ref("quay.io/ceph/ceph:v20") == "quay.io/ceph/ceph:v20"
    assert artifacts.normalize_ref("127.0.0.1:5000/x/y:1") == "127.0.0.1:5000/x/y:1"
    img = artifacts.ImageArtifact("registry.k8s.io/coredns/coredns:v1.13.1", None, ("k",))
    assert (img.host, img.repository, img.tag) == ("registry.k8s.io", "coredns/coredns", "v1.13.1")


@pytest.mark.parametrize("name", LABS)
def test_every_example_lab_lists_its_release(name):
    s = lab(name)
    version = s["kubernetes"]["version"]
    rel = releases.kube_releases()[version]
    arts = artifacts.lab_artifacts(s)
    by_name = {f.name: f for f in arts.files}
    for binary in ("kubeadm", "kubelet", "kubectl"):
        f = by_name[binary]
        assert f.url == f"https://dl.k8s.io/release/v{version}/bin/linux/amd64/{binary}"
        assert f.sha256 == rel[binary]
        assert f.dest.endswith(f"/{binary}")
        assert "kubernetes" in f.stages
    assert by_name["crictl"].sha256 == rel["crictl"]["sha256"]
    assert f"{s['kubernetes']['cni']}_manifest" in by_name
    got = refs(arts)
    assert f"registry.k8s.io/kube-apiserver:v{version}" in got
    assert f"registry.k8s.io/pause:{rel['pause']}" in got
    assert f"registry.k8s.io/etcd:{rel['etcd']}" in got
    assert f"registry.k8s.io/coredns/coredns:{rel['coredns']}" in got
    for f in arts.files:
        assert re.fullmatch(r"[0-9a-f]{64}", f.sha256), f
        assert f.url.startswith("https://")
        assert "{{" not in f.url + f.dest
    for i in arts.images:
        assert i.ref == artifacts.normalize_ref(i.ref)
        assert ":" in i.ref.rsplit("/", 1)[1]
    listing = artifacts.listing(arts)
    assert all(f.url in listing and f.sha256 in listing for f in arts.files)
    assert all(i.ref in listing for i in arts.images)


@pytest.mark.parametrize("version", list(releases.kube_releases()))
def test_every_release_has_the_image_tags_kubeadm_pulls(version):
    rel = releases.kube_releases()[version]
    assert re.fullmatch(r"3\.\d+\.\d+-0", rel["etcd"]), rel
    assert re.fullmatch(r"v1\.\d+\.\d+", rel["coredns"]), rel


def test_containerd_downloads_only_where_the_distribution_has_none():
    distro = artifacts.lab_artifacts(local())
    assert not {"containerd", "runc", "cni_plugins"} & {f.name for f in distro.files}
    newer = artifacts.lab_artifacts(local(kubernetes={"version": "1.36"}))
    names = {f.name: f for f in newer.files}
    assert {"containerd", "runc", "cni_plugins"} <= set(names)
    assert names["crictl"].stages == ("prepare", "kubernetes")
    assert names["containerd"].dest == "/usr/local"  # the archive holds bin/


def test_rook_and_demos_add_their_images_only_when_the_lab_has_them():
    bare = artifacts.lab_artifacts(local(rook={"enabled": False}))
    assert not any("rook" in i.stages for i in bare.images)
    assert not any(f.name.startswith("rook_") for f in bare.files)
    full = artifacts.lab_artifacts(local(demos=["redis-ha", "csi"]))
    got = {i.ref: i.stages for i in full.images}
    assert got["quay.io/ceph/ceph:v20.2.4"] == ("rook",)
    assert got["registry.k8s.io/sig-storage/snapshot-controller:v8.5.0"] == ("rook",)
    assert "demo:redis-ha" in got["docker.io/library/redis:7.4.2"]
    assert set(got["docker.io/library/busybox:1.37.0"]) == {"demo:csi"}
    only = full.for_stages({"prepare"})
    assert [i.ref for i in only.images] == ["registry.k8s.io/pause:3.10.1"]
    assert not only.files


def test_role_images_are_the_roles_own():
    """The Ceph and snapshot-controller images are read from the roles' defaults."""
    defaults = yaml.safe_load(artifacts.ROLE_DEFAULTS["ceph_cluster"].read_text())
    arts = artifacts.lab_artifacts(local())
    assert f"quay.io/ceph/ceph:{defaults['ceph_cluster_ceph_tag']}" in refs(arts)
    snap = yaml.safe_load(artifacts.ROLE_DEFAULTS["snapshot_controller"].read_text())
    tag = snap["snapshot_controller_tag"]
    assert f"registry.k8s.io/sig-storage/snapshot-controller:{tag}" in refs(arts)


def test_demo_images_come_from_every_template():
    for demo in ("storage-types", "pv-pvc", "access-modes", "csi", "statefulset", "redis-ha"):
        found = artifacts.demo_images(demo)
        assert found, demo
        text = "".join(p.read_text() for p in (artifacts.DEMO_TEMPLATES / demo).glob("*.j2"))
        assert text.count("image(") == len(found)


def _download_items(path, play_name=None):
    """Every literal download_items list in a playbook or task file."""
    found = []

    def walk(node):
        if isinstance(node, dict):
            items = node.get("download_items")
            if isinstance(items, list):
                found.extend(items)
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(yaml.safe_load(path.read_text()))
    return found


def test_stage_lists_match_the_playbooks():
    """The stages' download_items are what artifacts.py says each stage needs."""
    root = paths.ROOT
    cr = root / "roles" / "prepare" / "container_runtime" / "tasks" / "download.yml"
    assert tuple(_download_items(cr)) == artifacts.PREPARE_DOWNLOADS
    kube = _download_items(root / "playbooks" / "kubernetes.yml")
    assert set(kube) == {*artifacts.KUBERNETES_DOWNLOADS, "{{ kube_network_plugin }}_manifest"}
    assert tuple(_download_items(root / "playbooks" / "rook.yml")) == artifacts.ROOK_DOWNLOADS
    rook_defaults = yaml.safe_load(
        (root / "roles" / "rook" / "rook_operator" / "defaults" / "main.yml").read_text()
    )
    snap = yaml.safe_load(artifacts.ROLE_DEFAULTS["snapshot_controller"].read_text())
    used = rook_defaults["rook_operator_upstream"]
    used += snap["snapshot_controller_crds"] + snap["snapshot_controller_manifests"]
    assert tuple(used) == artifacts.ROOK_DOWNLOADS


@pytest.mark.parametrize("cni", ["calico", "flannel"])
def test_cni_images_match_the_cached_manifest(cni):
    """The table's images are the upstream manifest's (where the manifest is in the cache)."""
    s = local(kubernetes={"cni": cni})
    table = yaml.safe_load(artifacts.DOWNLOAD_TABLE.read_text())["download_table"]
    entry = table[f"{cni}_manifest"]
    cached = paths.cached_download(
        s, f"{cni}_manifest", entry["version"], entry["url"].rsplit("/", 1)[1]
    )
    if not cached.is_file():
        pytest.skip(f"{cni}'s manifest is not in the download cache ({cached}): no internet here")
    in_manifest = set(re.findall(r"^\s+image:\s*(\S+)", cached.read_text(), re.M))
    assert {artifacts.normalize_ref(r) for r in in_manifest} == set(entry["images"])


def test_cli_lists_and_refuses_unknown_actions(tmp_path):
    def run(*a):
        return run_cli("artifacts", *a, env_extra={"CLUSTERLAB_STATE": str(tmp_path)})

    listed = run("list", "--lab", "meetup-host")
    assert listed.returncode == 0, listed.stderr
    assert "docker.io/library/redis:7.4.2  [demo:redis-ha]" in listed.stdout
    bad = run("pack", "--lab", "meetup-host")
    assert bad.returncode == 2  # usage errors exit 2
    assert "one of list, fetch" in bad.stderr
    no_out = run("fetch", "--lab", "meetup-host")
    assert no_out.returncode == 2
    assert "--out DIR" in no_out.stderr


def test_kubeadm_images_are_the_ones_kubeadm_lists():
    """Where a release's kubeadm is in the download cache, its own image list is ours."""
    checked = []
    for version in releases.kube_releases():
        s = local(kubernetes={"version": version})
        cached = paths.cached_download(s, "kubeadm", version, "kubeadm")
        if not cached.is_file():
            continue
        out = subprocess.run(
            [str(cached), "config", "images", "list", "--kubernetes-version", f"v{version}"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        ours = artifacts.lab_artifacts(s).for_stages({"prepare", "kubernetes"})
        assert set(out) == {i.ref for i in ours.images if i.host == "registry.k8s.io"}, version
        checked.append(version)
    if not checked:
        pytest.skip("no release's kubeadm is in the download cache: no internet here")


def test_up_refuses_a_bundle_that_lacks_anything_before_touching_a_node(tmp_path):
    """`up --bundle` names every missing artifact and exits 1 with nothing created."""
    labdir = tmp_path / "inventories" / "offl"
    labdir.mkdir(parents=True)
    raw = {
        "name": "offl",
        "provider": "local",
        "os": "debian12",
        "network": {"cidr": "10.213.159.0/24"},
        "nodes": {"count": 1, "disks": [{"size": "5G"}]},
    }
    (labdir / "lab.yml").write_text(yaml.safe_dump(raw))
    spec = normalize(raw)
    needs = artifacts.lab_artifacts(spec)
    # a bundle holding only the pause image's entry (its archive present)
    pause = next(i for i in needs.images if "prepare" in i.stages)
    b = tmp_path / "bundle"
    archive = b / "images/registry.k8s.io/pause" / f"{pause.tag}.tar"
    archive.parent.mkdir(parents=True)
    archive.write_bytes(b"x")
    entry = {"path": str(archive.relative_to(b)), "digest": "sha256:" + "0" * 64, "pinned": None}
    (b / "index.json").write_text(
        json.dumps({"format": 1, "files": {}, "images": {pause.ref: entry}})
    )
    env = {
        "CLUSTERLAB_INVENTORIES": str(tmp_path / "inventories"),
        "CLUSTERLAB_STATE": str(tmp_path / "state"),
    }
    res = run_cli("up", "--lab", "offl", "--bundle", str(b), env_extra=env)
    assert res.returncode == 1, res.stderr
    lacking = needs.for_stages({"prepare", "kubernetes", "rook"})
    assert f"lacks {len(lacking.files) + len(lacking.images) - 1} artifact(s)" in res.stderr
    for f in lacking.files:
        assert f"file {f.url} (sha256 {f.sha256})" in res.stderr
    for i in lacking.images:
        assert (f"image {i.ref}\n" in res.stderr + "\n") == (i != pause), i.ref
    assert not (tmp_path / "state" / "offl").exists()  # nothing made, nothing remembered

    # the refused bundle is not remembered for later commands
    res = run_cli("spec", "--lab", "offl", env_extra=env)
    assert res.returncode == 0, res.stderr
    assert "bundle: null" in res.stdout


def test_bundle_and_own_mirrors_are_one_or_the_other():
    with pytest.raises(Exception, match="one source"):
        local(artifacts={"bundle": "/srv/b", "mirror_url": "http://10.213.3.1/files"})


def test_skopeo_errors_are_shown_as_their_message():

    line = 'time="2026-11-26T09:35:55Z" level=fatal msg="pinging quay.io: Get \\"https://quay.io/v2/\\": no such host"'
    assert bundle.skopeo_message(line) == 'pinging quay.io: Get "https://quay.io/v2/": no such host'
    assert bundle.skopeo_message("plain failure\n") == "plain failure"


ROOK_REFERENCE = paths.ROOT.parent / "shared" / "reference" / "rook-v1.20.6"


def test_rook_images_are_the_pinned_manifests_images():
    """Rook's image list is what its pinned operator.yaml and csi-operator.yaml run: the
    operator, the CSI operator and the CSI image set (csi-addons only where deployed)."""
    if not (ROOK_REFERENCE / "operator.yaml").exists():
        pytest.skip(f"{ROOK_REFERENCE} is not on this machine")
    found = set()
    addons = deploy_addons = None
    for name in ("operator.yaml", "csi-operator.yaml"):
        for doc in yaml.safe_load_all((ROOK_REFERENCE / name).read_text()):
            if not doc:
                continue
            if doc["kind"] == "Deployment":
                found |= {c["image"] for c in doc["spec"]["template"]["spec"]["containers"]}
            elif doc["kind"] == "ConfigMap" and doc["metadata"]["name"].endswith(
                "image-set-configmap"
            ):
                images = dict(doc["data"])
                addons = images.pop("addons")
                found |= set(images.values())
            elif doc["kind"] == "OperatorConfig":
                deploy_addons = doc["spec"]["driverSpecDefaults"].get("deployCsiAddons", False)
    assert addons  # listed in the image set …
    assert deploy_addons is False  # … but not deployed: the lab pulls no csi-addons sidecar
    table = yaml.safe_load(artifacts.DOWNLOAD_TABLE.read_text())["download_table"]
    assert {artifacts.normalize_ref(r) for r in found} == set(table["rook_operator"]["images"])


def test_group_vars_overrides_change_the_list(tmp_path, monkeypatch):
    """README tells users to override in inventories/<lab>/group_vars/ ("those files win"):
    the list follows the variables the stages resolve, not the spec alone. A copy of the
    default lab asking for the downloaded containerd, Flannel, Kubernetes 1.34 and another Ceph
    tag lists containerd/runc/CNI plugins, Flannel's images, 1.34's release and that tag."""
    monkeypatch.setenv("CLUSTERLAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("CLUSTERLAB_INVENTORIES", str(tmp_path / "inventories"))
    copy_dir = tmp_path / "inventories" / "upgv"
    (copy_dir / "group_vars").mkdir(parents=True)
    raw = yaml.safe_load(paths.lab_spec_file("default").read_text())
    raw.update(name="upgv", network={"cidr": "10.213.180.0/24"})
    (copy_dir / "lab.yml").write_text(yaml.safe_dump(raw))
    spec = load_spec_file(copy_dir / "lab.yml")
    before = artifacts.lab_artifacts(spec)
    assert "containerd" not in {f.name for f in before.files}  # Debian's, on 1.35
    assert "quay.io/ceph/ceph:v20.2.4" in refs(before)

    (copy_dir / "group_vars" / "all.yml").write_text(
        "container_runtime_source: download\n"
        "kube_network_plugin: flannel\n"
        'kube_version: "1.34.11"\n'
        "ceph_cluster_ceph_tag: v20.2.3\n"
    )
    after = artifacts.lab_artifacts(spec)
    files = {f.name: f for f in after.files}
    assert {"containerd", "runc", "cni_plugins"} <= set(files)
    assert "flannel_manifest" in files
    assert "calico_manifest" not in files
    assert files["kubeadm"].url.endswith("/v1.34.11/bin/linux/amd64/kubeadm")
    assert files["kubeadm"].sha256 == releases.kube_releases()["1.34.11"]["kubeadm"]
    images = refs(after)
    assert "registry.k8s.io/kube-apiserver:v1.34.11" in images
    assert "registry.k8s.io/kube-apiserver:v1.35.8" not in images
    assert not [r for r in images if r.startswith("quay.io/calico/")]
    assert [r for r in images if "flannel" in r]
    assert "quay.io/ceph/ceph:v20.2.3" in images
    assert "quay.io/ceph/ceph:v20.2.4" not in images
    # resolved once per inputs: one cached file per state of group_vars
    assert len(list((tmp_path / "cache" / "artifact-vars").glob("upgv-*.json"))) == 2


def test_an_image_pinned_by_digest_is_refused(monkeypatch):
    """A bundle holds one architecture's manifest (another digest) served by tag; containerd
    asks for the pinned digest and misses: the list refuses such a pin, naming the image."""
    resolved = artifacts.stage_vars(lab("default"))
    pinned = json.loads(json.dumps(resolved))
    pin = "quay.io/calico/node:v3.31.7@sha256:" + "a" * 64
    pinned["download_table"]["calico_manifest"]["images"] = [pin]
    monkeypatch.setattr(artifacts, "stage_vars", lambda _spec: pinned)
    with pytest.raises(artifacts.ArtifactError, match=re.escape(pin)):
        artifacts.lab_artifacts(lab("default"))
    monkeypatch.setattr(artifacts, "stage_vars", lambda _spec: resolved)
    assert all(i.digest is None for i in artifacts.lab_artifacts(lab("default")).images)


@pytest.fixture
def files_mirror(tmp_path):
    """A files mirror (<mirror>/HOST/PATH, Kubespray's files_repo layout) on loopback."""
    import functools  # noqa: PLC0415
    import http.server  # noqa: PLC0415
    import threading  # noqa: PLC0415

    root = tmp_path / "mirror"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *_a: None
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()
    thread.join(10)


def test_containerd_2_where_the_lab_can_download_it_debians_only_where_it_cannot(
    tmp_path, monkeypatch, files_mirror
):
    """Debian 12's containerd 1.6.20 is older than containerd's tested versions for Kubernetes
    1.35 (1.7.28+ or 2.x): auto takes the downloaded 2.x wherever the lab can have it (here: its
    files mirror has it, or the controller's cache does) and falls back on Debian's only where
    it cannot; `spec` says which."""
    from clusterlab import inventory  # noqa: PLC0415

    root, mirror = files_mirror
    monkeypatch.setenv("CLUSTERLAB_CACHE", str(tmp_path / "cache"))
    table = yaml.safe_load(artifacts.DOWNLOAD_TABLE.read_text())["download_table"]
    url = table["containerd"]["url"]
    cache_dir = tmp_path / "downloads"
    over = {"artifacts": {"mirror_url": mirror, "cache_dir": str(cache_dir)}}

    def source(s):
        return artifacts.stage_vars(s)["container_runtime_source"]

    s = local(**over)
    assert inventory.containerd_downloadable(s) is False  # the mirror lacks it
    assert source(s) == "distro"
    assert "containerd" not in {f.name for f in artifacts.lab_artifacts(s).files}

    served = root / url.split("://", 1)[1]
    served.parent.mkdir(parents=True)
    served.write_bytes(b"tarball")
    inventory._answers.cache_clear()
    assert inventory.containerd_downloadable(s) is True
    assert source(s) == "download"
    assert {"containerd", "runc", "cni_plugins"} <= {
        f.name for f in artifacts.lab_artifacts(s).files
    }
    assert "the downloaded 2." in commands_runtime_note(s)

    served.unlink()
    inventory._answers.cache_clear()
    cached = cache_dir / "containerd" / table["containerd"]["version"] / url.rsplit("/", 1)[1]
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"tarball")
    assert inventory.containerd_downloadable(s) is True

    # RHEL family and Kubernetes 1.36 download in any case: nothing to probe
    assert inventory.containerd_downloadable({**s, "os": "rocky9"}) is None
    newer = {**s, "kubernetes": {**s["kubernetes"], "version": "1.36.4"}}
    assert inventory.containerd_downloadable(newer) is None


def commands_runtime_note(s: dict) -> str:
    from clusterlab import commands  # noqa: PLC0415

    return commands.runtime_note(s)


def pypy_fetch_url(tmp_path, **extra) -> str:
    from localplay import local_inventory, run_playbook  # noqa: PLC0415

    play = paths.ROOT / "tests" / "fixtures" / "pypy-url-play.yml"
    res = run_playbook(play, local_inventory(tmp_path), extra)
    assert res.returncode == 0, res.stdout + res.stderr
    found = re.search(r"URL<(.*?)>", res.stdout, re.S)
    assert found, res.stdout
    return found.group(1).strip()


def test_flatcar_labs_carry_the_pypy_their_nodes_fetch_from_the_mirror(tmp_path, monkeypatch):
    """Flatcar has no Python: bootstrap_os unpacks a pinned PyPy before anything else runs.
    A Flatcar lab's list names that tarball (so a bundle carries it and `up --bundle` refuses
    one without it), and the node fetches it from the lab's files mirror or bundle when there is
    one, at <mirror>/HOST/PATH like every other file."""
    defaults = yaml.safe_load(
        (paths.ROOT / "roles/prepare/bootstrap_os/defaults/main.yml").read_text()
    )
    url, sha = (
        defaults["bootstrap_os_flatcar_pypy_url"],
        defaults["bootstrap_os_flatcar_pypy_sha256"],
    )
    coreos = {f.name: f for f in artifacts.lab_artifacts(lab("coreos")).files}
    assert coreos["flatcar_pypy"].url == url
    assert coreos["flatcar_pypy"].sha256 == sha
    assert coreos["flatcar_pypy"].stages == ("prepare",)
    assert "flatcar_pypy" not in {f.name for f in artifacts.lab_artifacts(lab("default")).files}

    # a group_vars override (a copy elsewhere) is what the list names
    monkeypatch.setenv("CLUSTERLAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("CLUSTERLAB_INVENTORIES", str(tmp_path / "inventories"))
    copy_dir = tmp_path / "inventories" / "pypyfc"
    (copy_dir / "group_vars").mkdir(parents=True)
    raw = yaml.safe_load(paths.lab_spec_file("coreos").read_text())
    raw.update(name="pypyfc", network={"cidr": "10.213.181.0/24"})
    (copy_dir / "lab.yml").write_text(yaml.safe_dump(raw))
    other = "https://pypy.mirror.test/pypy3.10-v7.3.17-linux64.tar.bz2"
    (copy_dir / "group_vars" / "all.yml").write_text(
        f"bootstrap_os_flatcar_pypy_url: {other}\nbootstrap_os_flatcar_pypy_sha256: {'b' * 64}\n"
    )
    files = {f.name: f for f in artifacts.lab_artifacts(load_spec_file(copy_dir / "lab.yml")).files}
    assert (files["flatcar_pypy"].url, files["flatcar_pypy"].sha256) == (other, "b" * 64)

    assert pypy_fetch_url(tmp_path) == url
    assert pypy_fetch_url(tmp_path, artifacts_mirror_url="") == url
    mirrored = pypy_fetch_url(tmp_path, artifacts_mirror_url="http://10.213.181.1:8090/")
    assert mirrored == "http://10.213.181.1:8090/" + url.split("://", 1)[1]
