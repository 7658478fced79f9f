"""The node_state module (prepare's fast path): each kind of guarantee, holding and not."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import yaml

from clusterlab import artifacts, paths

ROLES = paths.ROOT / "roles"
spec = importlib.util.spec_from_file_location(
    "node_state", ROLES / "common" / "node_state" / "library" / "node_state.py"
)
node_state = importlib.util.module_from_spec(spec)
spec.loader.exec_module(node_state)


def drift(check, *args) -> list[str]:
    out: list[str] = []
    check(*args, out)
    return out


def test_files_content_sha_and_mode(tmp_path: Path):
    f = tmp_path / "a.conf"
    f.write_text("x = 1\n")
    f.chmod(0o644)
    assert (
        drift(node_state.check_files, [{"path": str(f), "content": "x = 1\n", "mode": "0644"}])
        == []
    )
    assert drift(node_state.check_files, [{"path": str(f), "content": "x = 0\n"}]) == [
        f"{f}: content differs"
    ]
    assert drift(node_state.check_files, [{"path": str(f), "mode": "0600"}]) == [
        f"{f}: mode 0644, want 0600"
    ]
    assert drift(node_state.check_files, [{"path": str(f), "sha256": "0" * 64}]) == [
        f"{f}: sha256 differs"
    ]
    missing = tmp_path / "missing"
    assert drift(node_state.check_files, [{"path": str(missing), "content": ""}]) == [
        f"{missing}: no such file or directory"
    ]


def test_blocks_as_blockinfile_writes_them(tmp_path: Path):
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 localhost\n# BEGIN lab\n10.0.0.1 n1\n10.0.0.2 n2\n# END lab\n")
    block = {"path": str(hosts), "marker": "# {mark} lab", "block": "10.0.0.1 n1\n10.0.0.2 n2\n"}
    assert drift(node_state.check_blocks, [block]) == []
    assert drift(node_state.check_blocks, [{**block, "block": "10.0.0.1 n1\n"}]) == [
        f"{hosts}: block '# lab' differs"
    ]


def test_sysctls_commands_and_absent_files(tmp_path: Path):
    now = Path("/proc/sys/net/ipv4/ip_forward").read_text().strip()
    assert drift(node_state.check_sysctls, {"net.ipv4.ip_forward": now}) == []
    assert drift(node_state.check_sysctls, {"net.ipv4.ip_forward": "7"}) == [
        f"sysctl net.ipv4.ip_forward = {now}, want 7"
    ]
    assert drift(node_state.check_sysctls, {"no.such.key": 1}) == ["sysctl no.such.key: absent"]
    assert drift(node_state.check_commands, [{"name": "true", "cmd": "true"}]) == []
    assert drift(node_state.check_commands, [{"name": "it holds", "cmd": "exit 3"}]) == [
        "it holds: not so (exit 3)"
    ]
    for reg in ("keep.io", "stale.io", "foreign.io"):
        (tmp_path / reg).mkdir()
        mark = "" if reg == "foreign.io" else "# ours\n"
        (tmp_path / reg / "hosts.toml").write_text(mark + "server = 'x'\n")
    absent = {
        "glob": f"{tmp_path}/*/hosts.toml",
        "contains": "# ours",
        "keep": [f"{tmp_path}/keep.io/hosts.toml"],
    }
    assert drift(node_state.check_absent, [absent]) == [
        f"{tmp_path}/stale.io/hosts.toml: present, want absent"
    ]


def test_packages_on_this_machine():
    assert drift(node_state.check_packages, ["bash"]) == []
    assert drift(node_state.check_packages, ["bash", "no-such-package-here"]) == [
        "packages not installed: no-such-package-here"
    ]


def test_fast_path_checks_the_runtime_downloads_the_role_installs():
    """container_runtime's state check reads the stamps of exactly the items download.yml installs."""
    cr = ROLES / "prepare" / "container_runtime"
    items = yaml.safe_load((cr / "vars" / "main.yml").read_text())[
        "container_runtime_download_items"
    ]
    assert tuple(items) == artifacts.PREPARE_DOWNLOADS
