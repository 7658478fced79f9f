"""Serving a bundle: the index, the addresses and mirror variables, containerd's hosts.toml
files (the role's tasks, run on localhost), and the real servers on loopback."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import tomllib
import urllib.request

import pytest
from localplay import local_inventory, run_playbook

from clusterlab import ansible, inventory, paths, serve
from clusterlab.bundle import BundleError
from clusterlab.spec import normalize

MIRRORS_PLAY = paths.ROOT / "tests" / "fixtures" / "mirrors-play.yml"
RENDER_PREPARE = paths.ROOT / "tests" / "fixtures" / "render-prepare.yml"
TOOLS = ("docker-registry", "skopeo", "umoci")


def write_index(bundle, images=None, files=None, fmt=1) -> None:
    bundle.mkdir(parents=True, exist_ok=True)
    data = {"format": fmt, "files": files or {}, "images": images or {}}
    (bundle / "index.json").write_text(json.dumps(data))


def image_entry(ref: str) -> dict:
    host, repo, tag = serve.split_ref(ref)
    return {"path": f"images/{host}/{repo}/{tag}.tar", "digest": None}


# ------------------------------------------------------------------ index
def test_read_index_refuses_what_is_not_a_bundle(tmp_path):
    with pytest.raises(
        serve.ServeError, match=r"no index\.json .*(clusterlab|inv) artifacts fetch"
    ):
        serve.read_index(tmp_path)
    (tmp_path / "index.json").write_text("{not json")
    with pytest.raises(BundleError, match="not a bundle index"):
        serve.read_index(tmp_path)
    write_index(tmp_path, fmt=2)
    with pytest.raises(BundleError, match="bundle format 2, expected 1"):
        serve.read_index(tmp_path)
    write_index(tmp_path, images={"quay.io/a/b:1": {"digest": None}})
    with pytest.raises(serve.ServeError, match="images must map each entry to an object"):
        serve.read_index(tmp_path)


def test_read_index_and_image_hosts(tmp_path):
    refs = ["docker.io/library/busybox:1.37", "quay.io/ceph/ceph:v20.2.4", "quay.io/x/y:1"]
    write_index(tmp_path, images={r: image_entry(r) for r in refs})
    index = serve.read_index(tmp_path)
    assert index["files"] == {}
    assert serve.image_hosts(index) == ["docker.io", "quay.io"]


def test_split_ref():
    assert serve.split_ref("registry.k8s.io/pause:3.10.1") == ("registry.k8s.io", "pause", "3.10.1")
    assert serve.split_ref("localhost:5000/a/b:c@sha256:ab") == ("localhost:5000", "a/b", "c")
    for bad in ("busybox", "quay.io/ceph/ceph", "quay.io/:1"):
        with pytest.raises(serve.ServeError, match="not a full reference"):
            serve.split_ref(bad)


# ------------------------------------------------------------------ addresses, variables
def lab_spec(tmp_path, provider="local", **extra) -> dict:
    bundle = tmp_path / "bundle"
    refs = ["registry.k8s.io/pause:3.10.1", "docker.io/library/redis:8.2", "quay.io/ceph/ceph:v20"]
    write_index(bundle, images={r: image_entry(r) for r in refs})
    raw = {
        "name": "offunit",
        "provider": provider,
        "network": {"cidr": "10.213.151.0/24"},
        "nodes": {"count": 1},
        "rook": {"enabled": False},
        "artifacts": {"bundle": str(bundle)},
        **extra,
    }
    return normalize(raw)


def test_mirror_vars_of_a_local_lab(tmp_path):
    s = lab_spec(tmp_path)
    assert serve.serve_address(s) == "10.213.151.1"
    assert serve.mirror_vars(s) == {
        "artifacts_mirror_url": "http://10.213.151.1:8090",
        "artifacts_registry_mirrors": {
            "docker.io": "http://10.213.151.1:5005/v2/docker.io",
            "quay.io": "http://10.213.151.1:5005/v2/quay.io",
            "registry.k8s.io": "http://10.213.151.1:5005/v2/registry.k8s.io",
        },
    }


def test_static_lab_is_served_from_the_source_address_towards_its_nodes():
    s = {"provider": "static", "nodes": [{"name": "n1", "address": "127.0.0.1"}]}
    assert serve.serve_address(s) == "127.0.0.1"


def test_inventory_takes_the_mirrors_from_the_bundle(tmp_path):
    served = inventory.group_vars(lab_spec(tmp_path))
    assert served["artifacts_mirror_url"] == "http://10.213.151.1:8090"
    assert set(served["artifacts_registry_mirrors"]) == {"docker.io", "quay.io", "registry.k8s.io"}
    assert served["artifacts_image_registry"] == ""  # images keep their upstream names
    plain = inventory.group_vars(
        normalize(
            {
                "name": "offplain",
                "provider": "local",
                "nodes": {"count": 1},
                "rook": {"enabled": False},
            }
        )
    )
    assert "artifacts_registry_mirrors" not in plain


# ------------------------------------------------------------------ hosts.toml (the role's tasks)
def mirrors(tmp_path, certs, table: dict) -> subprocess.CompletedProcess:
    extra = {"container_runtime_certs_dir": str(certs), "artifacts_registry_mirrors": table}
    return run_playbook(MIRRORS_PLAY, local_inventory(tmp_path), extra)


def test_hosts_toml_per_upstream_registry_and_stale_ones_removed(tmp_path):
    certs = tmp_path / "certs.d"
    table = {
        "docker.io": "http://10.213.151.1:5005/v2/docker.io",
        "registry.k8s.io": "http://10.213.151.1:5005/v2/registry.k8s.io",
        "mirror.flat": "http://10.213.151.1:5006",
    }
    first = mirrors(tmp_path, certs, table)
    assert first.returncode == 0, first.stdout[-3000:]
    docker = tomllib.loads((certs / "docker.io" / "hosts.toml").read_text())
    assert docker["server"] == "https://registry-1.docker.io"  # docker.io's API endpoint
    assert docker["host"] == {
        "http://10.213.151.1:5005/v2/docker.io": {
            "capabilities": ["pull", "resolve"],
            "override_path": True,
        }
    }
    k8s = tomllib.loads((certs / "registry.k8s.io" / "hosts.toml").read_text())
    assert k8s["server"] == "https://registry.k8s.io"
    flat = tomllib.loads((certs / "mirror.flat" / "hosts.toml").read_text())
    assert "override_path" not in flat["host"]["http://10.213.151.1:5006"]  # no path: /v2 as usual

    again = mirrors(tmp_path, certs, table)
    assert ansible.recap(again.stdout)["render"]["changed"] == 0

    # the user's own hosts.toml is not ours to remove
    (certs / "ghcr.io").mkdir()
    (certs / "ghcr.io" / "hosts.toml").write_text('server = "https://ghcr.io"\n')
    fewer = mirrors(tmp_path, certs, {"registry.k8s.io": table["registry.k8s.io"]})
    assert fewer.returncode == 0, fewer.stdout[-3000:]
    assert sorted(p.parent.name for p in certs.glob("*/hosts.toml")) == [
        "ghcr.io",
        "registry.k8s.io",
    ]
    none = mirrors(tmp_path, certs, {})
    assert none.returncode == 0, none.stdout[-3000:]
    assert [p.parent.name for p in certs.glob("*/hosts.toml")] == ["ghcr.io"]


# ------------------------------------------------------------------ the servers, on loopback
def empty_image(work, archive) -> None:
    """A real (layerless) OCI image as an oci-archive."""
    subprocess.run(["umoci", "init", "--layout", str(work / "oci")], check=True)
    subprocess.run(["umoci", "new", "--image", f"{work / 'oci'}:t"], check=True)
    archive.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["skopeo", "copy", "--quiet", f"oci:{work / 'oci'}:t", f"oci-archive:{archive}"],
        check=True,
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def loopback_lab(tmp_path, monkeypatch):
    missing = [t for t in TOOLS if not shutil.which(t)]
    if missing:
        pytest.skip(f"needs {' '.join(missing)} (apt-get install)")
    monkeypatch.setenv("CLUSTERLAB_STATE", str(tmp_path / "state"))
    monkeypatch.setattr(serve, "FILES_PORT", free_port())
    monkeypatch.setattr(serve, "REGISTRY_PORT", free_port())
    bundle = tmp_path / "bundle"
    refs = ["docker.io/library/busybox:1", "quay.io/x/busybox:1"]  # same repo name, two hosts
    for ref in refs:
        empty_image(tmp_path / ref.split("/")[0], bundle / image_entry(ref)["path"])
    (bundle / "files" / "files.upstream.test").mkdir(parents=True)
    (bundle / "files" / "files.upstream.test" / "tool").write_text("tool\n")
    write_index(bundle, images={r: image_entry(r) for r in refs})
    s = {
        "name": "offloop",
        "provider": "static",
        "nodes": [{"name": "n1", "address": "127.0.0.1"}],
        "artifacts": {"bundle": str(bundle)},
    }
    yield s, bundle
    serve.stop(s)
    assert serve.processes(paths.state_dir("offloop")) == {}


def get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=5) as resp:  # noqa: S310
        return resp.read()


def test_start_serves_files_and_images_idempotently_and_stop_ends_it(loopback_lab, capfd):
    s, bundle = loopback_lab
    state = paths.state_dir("offloop")
    serve.start(s, bundle)
    running = serve.processes(state)
    assert sorted(running.values()) == ["files", "registry"]
    files = f"http://127.0.0.1:{serve.FILES_PORT}"
    assert get(f"{files}/files.upstream.test/tool") == b"tool\n"
    catalog = json.loads(get(f"http://127.0.0.1:{serve.REGISTRY_PORT}/v2/_catalog"))
    assert catalog["repositories"] == ["docker.io/library/busybox", "quay.io/x/busybox"]
    assert "image 2/2" in capfd.readouterr().err

    serve.start(s, bundle)  # same bundle: same servers, nothing loaded again
    assert serve.processes(state) == running
    assert "registry holds all 2 images" in capfd.readouterr().err

    # a pidfile lost: stop still finds both servers by their command lines
    (state / "serve" / "files.pid").unlink()
    serve.stop(s)
    assert serve.processes(state) == {}
    assert not (state / "serve" / "registry.pid").exists()
    serve.stop(s)  # nothing runs: fine


def test_a_taken_port_is_a_clear_error_and_nothing_keeps_running(loopback_lab):
    s, bundle = loopback_lab
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.1", serve.REGISTRY_PORT))
        squatter.listen()
        with pytest.raises(serve.ServeError, match=r"127\.0\.0\.1:\d+: the port is taken"):
            serve.start(s, bundle)
    assert serve.processes(paths.state_dir("offloop")) == {}


def test_an_image_archive_missing_from_the_bundle_is_named(loopback_lab):
    s, bundle = loopback_lab
    (bundle / image_entry("quay.io/x/busybox:1")["path"]).unlink()
    with pytest.raises(
        serve.ServeError, match=r"quay.io/x/busybox:1: the bundle lacks its archive"
    ):
        serve.start(s, bundle)


@pytest.mark.parametrize(
    ("kube_version", "sections"),
    [
        ("1.35.8", ["io.containerd.grpc.v1.cri"]),  # Debian's containerd 1.6: config version 2
        ("1.36.4", ["io.containerd.cri.v1.images", "io.containerd.transfer.v1.local"]),  # 2.x
    ],
)
def test_containerd_reads_the_hosts_files(tmp_path, kube_version, sections):
    out = tmp_path / "out"
    out.mkdir()
    extra = {"out_dir": str(out), "clusterlab_os_family": "debian", "kube_version": kube_version}
    res = run_playbook(RENDER_PREPARE, local_inventory(tmp_path), extra)
    assert res.returncode == 0, res.stdout[-3000:]
    plugins = tomllib.loads((out / "config.toml").read_text())["plugins"]
    for section in sections:
        registry = plugins[section].get("registry", plugins[section])
        assert registry["config_path"] == "/etc/containerd/certs.d"
