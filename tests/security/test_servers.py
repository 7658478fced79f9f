"""The bundle's servers only serve: the registry refuses pushes once the images are loaded,
the file server gives regular files inside the bundle and nothing else, and neither runs
as root when what it serves is readable by others. Real servers on loopback."""

from __future__ import annotations

import http.client
import json
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import urllib.request
from pathlib import Path

import pytest

from clusterlab import paths, serve

TOOLS = ("docker-registry", "skopeo", "umoci")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def empty_image(work: Path, archive: Path) -> None:
    """A real (layerless) OCI image as an oci-archive."""
    subprocess.run(["umoci", "init", "--layout", str(work / "oci")], check=True)
    subprocess.run(["umoci", "new", "--image", f"{work / 'oci'}:t"], check=True)
    archive.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["skopeo", "copy", "--quiet", f"oci:{work / 'oci'}:t", f"oci-archive:{archive}"],
        check=True,
    )


@pytest.fixture(scope="module")
def served():
    """One bundle served on 127.0.0.1 for the whole module (started once, stopped after)."""
    missing = [t for t in TOOLS if not shutil.which(t)]
    if missing:
        pytest.skip(f"needs {' '.join(missing)} (apt-get install)")
    mp = pytest.MonkeyPatch()
    top = Path(tempfile.mkdtemp(prefix="clsec-serve-"))
    top.chmod(0o755)
    mp.setenv("CLUSTERLAB_STATE", str(top / "state"))
    mp.setattr(serve, "FILES_PORT", free_port())
    mp.setattr(serve, "REGISTRY_PORT", free_port())
    bundle = top / "bundle"
    ref = "docker.io/library/busybox:1"
    archive = bundle / "images" / "docker.io" / "library" / "busybox" / "1.tar"
    empty_image(top / "work", archive)
    files = bundle / "files"
    (files / "files.upstream.test").mkdir(parents=True)
    (files / "files.upstream.test" / "tool").write_text("tool\n")
    (files / "inside").symlink_to("files.upstream.test/tool")  # stays in the bundle: fine
    (files / "leak").symlink_to("/")
    (files / "passwd").symlink_to("/etc/passwd")
    (files / "up").symlink_to("../index.json")
    (bundle / "index.json").write_text(
        json.dumps(
            {
                "format": 1,
                "files": {},
                "images": {ref: {"path": str(archive.relative_to(bundle)), "digest": None}},
            }
        )
    )
    for d, _, names in os.walk(top):
        os.chmod(d, 0o755)  # noqa: S103
        for n in names:
            if not os.path.islink(os.path.join(d, n)):
                os.chmod(os.path.join(d, n), 0o644)
    s = {
        "name": "secserve",
        "provider": "static",
        "nodes": [{"name": "n1", "address": "127.0.0.1"}],
        "artifacts": {"bundle": str(bundle)},
    }
    try:
        serve.start(s, bundle)
        yield s, bundle, top
    finally:
        serve.stop(s)
        leftover = serve.processes(paths.state_dir("secserve"))
        mp.undo()
        shutil.rmtree(top)
        assert leftover == {}


def raw_get(path: str) -> int:
    """The status of GET `path` sent as it is (no client-side normalisation)."""
    conn = http.client.HTTPConnection("127.0.0.1", serve.FILES_PORT, timeout=5)
    try:
        conn.putrequest("GET", path, skip_host=False, skip_accept_encoding=True)
        conn.endheaders()
        resp = conn.getresponse()
        resp.read()
        return resp.status
    finally:
        conn.close()


def test_regular_files_inside_the_bundle_are_served(served):
    with urllib.request.urlopen(
        f"http://127.0.0.1:{serve.FILES_PORT}/files.upstream.test/tool", timeout=5
    ) as resp:
        assert resp.read() == b"tool\n"
    assert raw_get("/inside") == 200


@pytest.mark.parametrize(
    "path",
    [
        "/",  # no listing of the bundle
        "/files.upstream.test/",
        "/files.upstream.test",
        "/leak/etc/passwd",  # a symlink to / in the bundle
        "/leak/",
        "/passwd",  # a symlink to a file outside
        "/up",  # a symlink to the bundle's index, outside files/
        "/../index.json",
        "/files.upstream.test/../../index.json",
        "/%2e%2e/index.json",
        "/files.upstream.test/%2e%2e/%2e%2e/index.json",
        "/files.upstream.test//tool",
        "/files.upstream.test/./tool",
        "/files.upstream.test%5c..%5c..%5cindex.json",
        "/files.upstream.test/tool%00",
        "/%ff",
    ],
)
def test_anything_else_is_404(served, path):
    assert raw_get(path) == 404


def _uid(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[2])  # effective
    raise AssertionError(pid)


@pytest.mark.skipif(os.geteuid() != 0, reason="dropping privileges is what root does")
def test_servers_do_not_run_as_root_when_nobody_can_read(served):
    nobody = pwd.getpwnam("nobody").pw_uid
    running = serve.processes(paths.state_dir("secserve"))
    assert sorted(running.values()) == ["files", "registry"]
    for pid in running:
        assert _uid(pid) == nobody, f"{running[pid]} server runs as uid {_uid(pid)}"


def test_registry_refuses_a_push_and_still_serves_pulls(served, tmp_path):
    _, bundle, _ = served
    registry = f"127.0.0.1:{serve.REGISTRY_PORT}"
    catalog_url = f"http://{registry}/v2/_catalog"
    with urllib.request.urlopen(catalog_url, timeout=5) as resp:
        before = json.loads(resp.read())
    assert before["repositories"] == ["docker.io/library/busybox"]
    archive = next(bundle.rglob("*.tar"))
    push = subprocess.run(
        [
            "skopeo",
            "copy",
            "--quiet",
            "--dest-tls-verify=false",
            f"oci-archive:{archive}",
            f"docker://{registry}/registry.k8s.io/kube-proxy:v1.35.0",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert push.returncode != 0, "the lab's registry accepted a push"
    assert "405" in push.stderr or "unsupported" in push.stderr.lower(), push.stderr
    # overwriting an existing tag is refused too
    over = subprocess.run(
        [
            "skopeo",
            "copy",
            "--quiet",
            "--dest-tls-verify=false",
            f"oci-archive:{archive}",
            f"docker://{registry}/docker.io/library/busybox:1",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert over.returncode != 0
    with urllib.request.urlopen(catalog_url, timeout=5) as resp:
        assert json.loads(resp.read()) == before
    pull = subprocess.run(
        [
            "skopeo",
            "copy",
            "--quiet",
            "--src-tls-verify=false",
            f"docker://{registry}/docker.io/library/busybox:1",
            f"oci:{tmp_path / 'pulled'}:t",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert pull.returncode == 0, pull.stderr
    assert (tmp_path / "pulled" / "index.json").is_file()


def test_a_file_nobody_cannot_read_keeps_the_owner():
    """run_as: nobody only when nobody can read every file (else downloads would 404)."""
    top = Path(tempfile.mkdtemp(prefix="clsec-ro-"))
    try:
        top.chmod(0o755)
        (top / "d").mkdir(mode=0o755)
        (top / "d" / "f").write_text("x")
        (top / "d" / "f").chmod(0o644)
        (top / "dangling").symlink_to(top / "nothing")
        assert serve._readable_by_others(top)
        (top / "d" / "f").chmod(0o600)
        assert not serve._readable_by_others(top)
        if os.geteuid() == 0:
            prefix, who = serve.run_as(top)
            assert prefix == []
            assert who.startswith("root (")
            assert str(top) in who
    finally:
        shutil.rmtree(top)
