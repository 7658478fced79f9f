"""What a host lets the local provider give its nodes."""

from __future__ import annotations

import pytest

from clusterlab.providers import local

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("bounding", "lacking"),
    [
        ("000001ffffffffff", []),  # a host with every capability
        ("000001fffeffffff", ["CAP_SYS_RESOURCE"]),  # a container without CAP_SYS_RESOURCE
        ("00000000a80425fb", ["CAP_SYS_RESOURCE", "CAP_SYSLOG"]),  # Docker's default set
    ],
)
def test_capabilities_a_host_cannot_give_its_nodes(bounding, lacking):
    status = f"Name:\tx\nCapEff:\t0000000000000000\nCapBnd:\t{bounding}\nCapAmb:\t0\n"
    assert local.capabilities_not_grantable(status) == lacking
    assert set(local.NODE_CAPABILITIES) >= set(lacking)
