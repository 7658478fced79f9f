"""The download mechanism against a local HTTP server on loopback (real Ansible, real get_url)."""

from __future__ import annotations

import hashlib
import io
import socket
import subprocess
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from localplay import local_inventory, run_playbook

from clusterlab import ansible, paths

PLAY = paths.ROOT / "tests" / "fixtures" / "download-play.yml"
UPSTREAM = "https://files.upstream.test/releases/v1"


class Mirror:
    """Serves files from a dict on 127.0.0.1 and logs every request path."""

    def __init__(self, files: dict[str, bytes]):
        self.files = files
        self.requests: list[str] = []
        mirror = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                mirror.requests.append(self.path)
                body = mirror.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/mirror"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def tgz(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o755
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def run(tmp_path, table: dict, items: list[str], mirror_url: str) -> subprocess.CompletedProcess:
    extra = {
        "download_table": table,
        "download_items": items,
        "download_cache_dir": str(tmp_path / "cache"),
        "download_stamp_dir": str(tmp_path / "node" / "stamps"),
        "download_mirror_url": mirror_url,
    }
    return run_playbook(PLAY, local_inventory(tmp_path, "node"), extra)


def tool_entry(tmp_path, sha256: str) -> dict:
    """A binary download table entry installed into the test's fake node."""
    return {
        "version": "1.0",
        "url": f"{UPSTREAM}/tool",
        "sha256": sha256,
        "unpack": "binary",
        "dest": str(tmp_path / "node" / "bin" / "tool"),
    }


@pytest.fixture
def payloads():
    tool = b"#!/bin/sh\necho tool 1.0\n"
    archive = tgz({"bin/alpha": b"alpha", "bin/beta": b"beta"})
    return tool, archive


def test_fetch_from_mirror_install_and_cache_hit(tmp_path, payloads):
    tool, archive = payloads
    table = {
        "tool": tool_entry(tmp_path, sha(tool)),
        "bundle": {
            "version": "2.0",
            "url": f"{UPSTREAM}/bundle.tar.gz",
            "sha256": sha(archive),
            "unpack": "archive",
            "dest": str(tmp_path / "node" / "opt"),
        },
    }
    files = {
        "/mirror/files.upstream.test/releases/v1/tool": tool,
        "/mirror/files.upstream.test/releases/v1/bundle.tar.gz": archive,
    }
    with Mirror(files) as m:
        first = run(tmp_path, table, ["tool", "bundle"], m.url)
        assert first.returncode == 0, first.stdout[-3000:]
        assert sorted(m.requests) == sorted(files)  # each fetched exactly once, from the mirror
        assert (tmp_path / "cache" / "tool" / "1.0" / "tool").read_bytes() == tool
        installed = tmp_path / "node" / "bin" / "tool"
        assert installed.read_bytes() == tool
        assert installed.stat().st_mode & 0o777 == 0o755
        assert (tmp_path / "node" / "opt" / "bin" / "beta").read_bytes() == b"beta"
        assert (tmp_path / "node" / "stamps" / "tool").read_text() == sha(tool)

        m.requests.clear()
        second = run(tmp_path, table, ["tool", "bundle"], m.url)
        assert second.returncode == 0, second.stdout[-3000:]
        assert m.requests == []  # cache hit: no request at all
        assert ansible.recap(second.stdout)["node"]["changed"] == 0


def test_checksum_mismatch_is_refused_and_leaves_no_file(tmp_path, payloads):
    tool, _ = payloads
    table = {"tool": tool_entry(tmp_path, sha(b"something else"))}
    with Mirror({"/mirror/files.upstream.test/releases/v1/tool": tool}) as m:
        res = run(tmp_path, table, ["tool"], m.url)
    assert res.returncode != 0
    assert "checksum" in (res.stdout + res.stderr).lower()
    assert [p for p in (tmp_path / "cache").rglob("*") if p.is_file()] == []  # nothing kept
    assert not (tmp_path / "node" / "bin" / "tool").exists()


def test_missing_file_on_mirror_is_a_clear_failure(tmp_path, payloads):
    tool, _ = payloads
    table = {"tool": tool_entry(tmp_path, sha(tool))}
    with Mirror({}) as m:
        res = run(tmp_path, table, ["tool"], m.url)
        assert m.requests == ["/mirror/files.upstream.test/releases/v1/tool"]
    assert res.returncode != 0
    found = ansible.failures(res.stdout)
    assert found, res.stdout[-3000:]
    assert f"cannot download {m.url}/files.upstream.test/releases/v1/tool: " in found[0]
    assert "404" in found[0]


def test_unreachable_upstream_names_the_url_and_the_mirror_setting(tmp_path, payloads):
    tool, _ = payloads
    with socket.socket() as s:  # a loopback port with nobody listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    table = {"tool": {**tool_entry(tmp_path, sha(tool)), "url": f"http://127.0.0.1:{port}/tool"}}
    res = run(tmp_path, table, ["tool"], "")
    assert res.returncode != 0
    found = ansible.failures(res.stdout)
    assert len(found) == 1, res.stdout[-3000:]
    assert f"cannot download http://127.0.0.1:{port}/tool: " in found[0]
    assert "artifacts.mirror_url" in found[0]
    assert not (tmp_path / "node" / "bin" / "tool").exists()
