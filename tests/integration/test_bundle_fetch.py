"""`inv artifacts fetch` against stand-ins for the upstreams on loopback: an HTTP server (with
byte ranges) for the files and a real docker-registry for the images.

Checks the bundle contract: checksums verified, a partial download resumed and never counted
as present, a corrupt file or archive fetched again, re-runs idempotent, `missing` exact.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import re
import subprocess
import threading
from pathlib import Path

import pytest
from ociimage import Registry, busybox_layout, missing_tools

from clusterlab import bundle, progname
from clusterlab.artifacts import Artifacts, FileArtifact, ImageArtifact

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(bool(missing_tools()), reason=f"needs {', '.join(missing_tools())}"),
]


class RangeServer(http.server.ThreadingHTTPServer):
    """Serves `root` on 127.0.0.1 with Range support; counts the body bytes it sent."""

    def __init__(self, root: Path):
        self.root = root
        self.sent = 0
        self.cuts = 0  # the next `cuts` bodies stop halfway, the connection closed cleanly
        super().__init__(("127.0.0.1", 0), _Handler)


class _Handler(http.server.BaseHTTPRequestHandler):
    server: RangeServer

    def log_message(self, *args) -> None:  # keep pytest's output clean
        pass

    def do_GET(self) -> None:
        path = self.server.root / self.path.lstrip("/")
        if not path.is_file():
            self.send_error(404)
            return
        data = path.read_bytes()
        start = 0
        m = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range", ""))
        if m:
            start = int(m.group(1))
            if start >= len(data):
                self.send_response(416)
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.server.cuts > 0:
            self.server.cuts -= 1
            body = body[: len(body) // 2]
            self.close_connection = True
        self.wfile.write(body)
        self.server.sent += len(body)


@pytest.fixture
def upstream(tmp_path):
    root = tmp_path / "upstream"
    root.mkdir()
    srv = RangeServer(root)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()
        thread.join(10)


def make_file(srv: RangeServer, name: str, size: int, stages=("kubernetes",)) -> FileArtifact:
    data = bytes((i * 7 + len(name)) % 251 for i in range(size))
    (srv.root / name).write_bytes(data)
    host, port = srv.server_address[:2]
    return FileArtifact(
        name=name,
        version="1",
        url=f"http://{host}:{port}/{name}",
        sha256=hashlib.sha256(data).hexdigest(),
        dest=f"/usr/local/bin/{name}",
        stages=tuple(stages),
    )


def test_files_verified_resumed_and_idempotent(upstream, tmp_path):
    out = tmp_path / "bundle"
    big = make_file(upstream, "kubelet", 3 << 20)
    small = make_file(upstream, "crictl.tar.gz", 4096)
    arts = Artifacts((big, small), ())

    # an interrupted earlier run left the first MiB of kubelet as a part
    dest = out / bundle.file_path(big)
    dest.parent.mkdir(parents=True)
    part = dest.with_name(dest.name + ".part")
    part.write_bytes((upstream.root / "kubelet").read_bytes()[: 1 << 20])
    assert bundle.missing(arts, out) == [
        f"{out} is not a bundle (no index.json); make one with `{progname.cmd('artifacts fetch')}`"
    ]

    counts = bundle.fetch(arts, out)
    assert counts == {"fetched": 2, "present": 0, "failed": 0}
    assert upstream.sent == (3 << 20) - (1 << 20) + 4096  # the part was resumed, not refetched
    assert not part.exists()
    assert bundle.sha256_of(dest) == big.sha256
    index = json.loads((out / "index.json").read_text())
    assert index["files"][big.url] == {
        "sha256": big.sha256,
        "path": bundle.file_path(big),
        "size": 3 << 20,
    }
    assert bundle.missing(arts, out) == []

    # a re-run downloads nothing
    upstream.sent = 0
    assert bundle.fetch(arts, out) == {"fetched": 0, "present": 2, "failed": 0}
    assert upstream.sent == 0

    # a corrupt copy in the bundle does not count as present: fetched again
    dest.write_bytes(b"corrupt")
    assert bundle.fetch(arts, out)["fetched"] == 1
    assert bundle.sha256_of(dest) == big.sha256


def test_a_body_cut_short_is_resumed_not_thrown_away(upstream, tmp_path):
    """A connection closed cleanly mid-body ends the read without an error (http.client):
    the fetch measures the part against Content-Length/Content-Range and resumes it with a
    Range request instead of failing the checksum and deleting what it had."""
    out = tmp_path / "bundle"
    f = make_file(upstream, "kubeadm", 1 << 20)
    upstream.cuts = 2  # the first body and the first resume both stop halfway
    assert bundle.fetch(Artifacts((f,), ()), out) == {"fetched": 1, "present": 0, "failed": 0}
    assert bundle.sha256_of(out / bundle.file_path(f)) == f.sha256
    # half, then half of the rest, then the remaining quarter: nothing fetched twice
    assert upstream.sent == 1 << 20

    # a server that keeps cutting: the part is kept for the next run, which completes it
    g = make_file(upstream, "kubectl", 1 << 20)
    upstream.cuts = bundle.RESUMES + 1
    with pytest.raises(bundle.BundleError, match=r"closed the connection after .* to resume"):
        bundle.fetch(Artifacts((g,), ()), out)
    part = out / (bundle.file_path(g) + ".part")
    assert part.stat().st_size > 0
    assert bundle.fetch(Artifacts((g,), ()), out)["fetched"] == 1
    assert bundle.sha256_of(out / bundle.file_path(g)) == g.sha256


def test_checksum_mismatch_is_not_kept(upstream, tmp_path):
    out = tmp_path / "bundle"
    good = make_file(upstream, "runc", 2048)
    bad = make_file(upstream, "kubeadm", 2048)
    bad = FileArtifact(**{**bad.__dict__, "sha256": "0" * 64})  # the table pins another file
    gone = FileArtifact(**{**good.__dict__, "name": "gone", "url": good.url + "-gone"})
    with pytest.raises(bundle.BundleError) as err:
        bundle.fetch(Artifacts((good, bad, gone), ()), out)
    msg = str(err.value)
    assert "2 of 3 artifacts could not be fetched" in msg
    assert f"{bad.url}: sha256 " in msg
    assert "not kept" in msg
    assert f"cannot download {gone.url}: " in msg
    assert not (out / bundle.file_path(bad)).exists()
    assert not list((out / bundle.file_path(bad)).parent.glob("kubeadm*"))
    # what did arrive is recorded; what failed is reported missing
    assert bundle.missing(Artifacts((good, bad, gone), ()), out) == [
        f"file {bad.url} (sha256 {bad.sha256})",
        f"file {gone.url} (sha256 {gone.sha256})",
    ]


def test_images_as_oci_archives(tmp_path):
    work = tmp_path / "build"
    work.mkdir()
    with Registry(tmp_path / "registry") as reg:
        digest = reg.push(busybox_layout(work, "1.0"), "library/busybox:1.0")
        other = reg.push(busybox_layout(work, "2.0", marker="two"), "rook/ceph:v2")
        img = ImageArtifact(f"{reg.host}/library/busybox:1.0", None, ("demo:csi",))
        pinned = ImageArtifact(f"{reg.host}/rook/ceph:v2", other, ("rook",))
        wrong_pin = ImageArtifact(f"{reg.host}/rook/ceph:v2", digest, ("rook",))
        arts = Artifacts((), (img, pinned))
        out = tmp_path / "bundle"

        assert bundle.fetch(arts, out) == {"fetched": 2, "present": 0, "failed": 0}
        index = json.loads((out / "index.json").read_text())
        entry = index["images"][img.ref]
        archive = out / bundle.image_path(img)
        assert entry["path"] == bundle.image_path(img)
        assert entry["path"] == f"images/127.0.0.1_{reg.port}/library/busybox/1.0.tar"
        assert entry["digest"] == digest == bundle.archive_digest(archive)
        assert entry["sha256"] == bundle.sha256_of(archive)
        assert index["images"][pinned.ref]["pinned"] == other
        assert index["images"][pinned.ref]["digest"] == other  # an OCI image stays as it is
        assert index["images"][img.ref]["pinned"] is None
        assert bundle.missing(arts, out) == []
        assert bundle.missing(Artifacts((), (wrong_pin,)), out) == [f"image {wrong_pin.ref}"]
        # the archive holds the image itself: its layer has busybox
        listing = subprocess.run(
            ["tar", "-tf", str(archive)], capture_output=True, text=True, check=True
        ).stdout
        assert "index.json" in listing
        assert "blobs/sha256/" in listing

        # idempotent: a re-run copies nothing (the archive is left as it was)
        before = archive.stat().st_mtime_ns
        assert bundle.fetch(arts, out) == {"fetched": 0, "present": 2, "failed": 0}
        assert archive.stat().st_mtime_ns == before

        # a truncated archive is not present: missing names it, and it is copied again
        archive.write_bytes(archive.read_bytes()[:100])
        assert bundle.missing(arts, out) == [f"image {img.ref}"]
        assert bundle.fetch(arts, out)["fetched"] == 1
        assert bundle.archive_digest(archive) == digest

        # a pin the bundle's copy was not made from is missing; one the registry does not
        # serve under that name is refused, not kept
        with pytest.raises(bundle.BundleError, match="could not be fetched"):
            bundle.fetch(Artifacts((), (wrong_pin,)), tmp_path / "other")
        assert not (tmp_path / "other" / bundle.image_path(wrong_pin)).exists()


def test_bundles_are_shared_between_labs(upstream, tmp_path):
    out = tmp_path / "bundle"
    a = make_file(upstream, "a", 100)
    b = make_file(upstream, "b", 100)
    bundle.fetch(Artifacts((a,), ()), out)
    bundle.fetch(Artifacts((b,), ()), out)
    assert bundle.missing(Artifacts((a, b), ()), out) == []
    assert set(bundle.read_index(out)["files"]) == {a.url, b.url}
