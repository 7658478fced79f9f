"""Local nodes get nameservers they can reach, also on hosts with a loopback stub resolver."""

from __future__ import annotations

import pytest

from clusterlab.providers.base import ProviderError
from clusterlab.providers.local import node_nameservers

pytestmark = pytest.mark.unit


def write(tmp_path, name: str, text: str):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_host_nameservers_pass_through(tmp_path):
    host = write(tmp_path, "resolv", "search lab\nnameserver 10.255.255.53\nnameserver 1.2.3.4\n")
    assert node_nameservers(host, tmp_path / "none") == [
        "nameserver 10.255.255.53",
        "nameserver 1.2.3.4",
    ]


def test_stub_resolver_is_replaced_by_its_upstreams(tmp_path):
    host = write(tmp_path, "resolv", "nameserver 127.0.0.53\noptions edns0 trust-ad\n")
    upstream = write(tmp_path, "upstream", "nameserver 192.0.2.1\nnameserver ::1\n")
    assert node_nameservers(host, upstream) == ["nameserver 192.0.2.1"]


def test_no_reachable_nameserver_is_a_clear_error(tmp_path):
    host = write(tmp_path, "resolv", "nameserver 127.0.0.53\n")
    with pytest.raises(ProviderError, match="loopback addresses no node can reach"):
        node_nameservers(host, tmp_path / "missing")


def test_offline_host_gives_nodes_the_fallback_nameserver(tmp_path):
    host = write(tmp_path, "resolv", "nameserver 127.0.0.53\n")
    assert node_nameservers(host, tmp_path / "missing", fallback="10.213.150.1") == [
        "nameserver 10.213.150.1"
    ]
    assert node_nameservers(tmp_path / "no-resolv", tmp_path / "missing", "10.0.0.1") == [
        "nameserver 10.0.0.1"
    ]
