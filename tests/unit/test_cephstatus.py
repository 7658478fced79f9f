"""clusterlab.cephstatus: `ceph status -f json` -> summary, and what is missing.

The JSON documents below are HAND-WRITTEN LAYOUT SAMPLES, not captured output: they follow
the layout Ceph documents and prints (the keys Rook's own status parser reads, the
Octopus-and-later flat `osdmap`, the Nautilus-and-earlier nested `osdmap.osdmap`), with
values made up for the tests. Output of a real mon + OSD is checked by the integration test
that runs Debian's Ceph in a local node (it calls clusterlab.cephstatus.summarize on it).
"""

from __future__ import annotations

import copy
import json

import pytest

from clusterlab import cephstatus

# Layout sample: Ceph 15 and later (Debian 12's 16.2; Rook v1.20's 19.2 / 20.2).
OCTOPUS_AND_LATER = {
    "fsid": "7d7bd7a4-0000-4000-8000-000000000001",
    "health": {
        "status": "HEALTH_WARN",
        "checks": {
            "POOL_NO_REDUNDANCY": {
                "severity": "HEALTH_WARN",
                "summary": {"message": "1 pool(s) have no replicas configured", "count": 1},
                "muted": False,
            }
        },
        "mutes": [],
    },
    "election_epoch": 3,
    "quorum": [0],
    "quorum_names": ["a"],
    "quorum_age": 120,
    "monmap": {"epoch": 1, "min_mon_release_name": "squid", "num_mons": 1},
    "osdmap": {
        "epoch": 12,
        "num_osds": 1,
        "num_up_osds": 1,
        "osd_up_since": 1700000000,
        "num_in_osds": 1,
        "osd_in_since": 1700000000,
        "num_remapped_pgs": 0,
    },
    "pgmap": {"pgs_by_state": [{"state_name": "active+clean", "count": 1}], "num_pgs": 1},
    "fsmap": {"epoch": 1, "by_rank": [], "up:standby": 0},
    "mgrmap": {"available": True, "num_standbys": 0, "modules": ["iostat"], "services": {}},
    "servicemap": {"epoch": 1, "modified": "2024-01-01T00:00:00.000000+0000", "services": {}},
    "progress_events": {},
}

# Layout sample: Ceph 14 (Nautilus) and earlier: OSD counters one level down, full mgr map.
NAUTILUS = {
    "fsid": "7d7bd7a4-0000-4000-8000-000000000002",
    "health": {"status": "HEALTH_OK", "checks": {}, "mutes": []},
    "election_epoch": 8,
    "quorum": [0, 1, 2],
    "quorum_names": ["a", "b", "c"],
    "monmap": {"epoch": 2, "min_mon_release_name": "14", "num_mons": 3},
    "osdmap": {
        "osdmap": {
            "epoch": 14,
            "num_osds": 3,
            "num_up_osds": 3,
            "num_in_osds": 3,
            "full": False,
            "nearfull": False,
            "num_remapped_pgs": 0,
        }
    },
    "mgrmap": {
        "epoch": 5,
        "active_gid": 4100,
        "active_name": "x",
        "available": True,
        "standbys": [],
    },
}


def test_octopus_and_later_layout():
    s = cephstatus.summarize(OCTOPUS_AND_LATER)
    assert s.health == "HEALTH_WARN"
    assert s.checks == {"POOL_NO_REDUNDANCY": "1 pool(s) have no replicas configured"}
    assert s.quorum == ["a"]
    assert s.mgr_active is True
    assert (s.osds, s.osds_up, s.osds_in) == (1, 1, 1)


def test_nautilus_nested_osdmap_layout():
    s = cephstatus.summarize(NAUTILUS)
    assert s.health == "HEALTH_OK"
    assert s.checks == {}
    assert s.quorum == ["a", "b", "c"]
    assert s.mgr_active is True
    assert (s.osds, s.osds_up, s.osds_in) == (3, 3, 3)


def test_reads_what_json_loads_gives():
    s = cephstatus.summarize(json.loads(json.dumps(OCTOPUS_AND_LATER)))
    assert s.osds_up == 1


def degraded() -> dict:
    st = copy.deepcopy(OCTOPUS_AND_LATER)
    st["health"] = {
        "status": "HEALTH_ERR",
        "checks": {
            "MON_DOWN": {"severity": "HEALTH_WARN", "summary": {"message": "1/3 mons down"}},
            "OSD_DOWN": {"severity": "HEALTH_WARN", "summary": {"message": "1 osds down"}},
        },
        "mutes": [],
    }
    st["quorum_names"] = ["a", "b"]
    st["osdmap"].update(num_osds=2, num_up_osds=1, num_in_osds=2)
    st["mgrmap"]["available"] = False
    return st


def test_degraded_cluster_summary():
    s = cephstatus.summarize(degraded())
    assert s.health == "HEALTH_ERR"
    assert set(s.checks) == {"MON_DOWN", "OSD_DOWN"}
    assert s.mgr_active is False
    assert (s.osds, s.osds_up, s.osds_in) == (2, 1, 2)


def test_missing_names_every_gap():
    gaps = cephstatus.missing(cephstatus.summarize(degraded()), mons=3, osds=3)
    assert gaps == [
        "2 of 3 mons in quorum (a, b)",
        "no mgr is active",
        "2 of 3 OSDs exist (osd-prepare has not created the others)",
        "1 of 3 OSDs up",
        "2 of 3 OSDs in",
        "HEALTH_ERR (MON_DOWN: 1/3 mons down; OSD_DOWN: 1 osds down)",
    ]


def test_missing_is_empty_for_a_whole_healthy_cluster():
    assert cephstatus.missing(cephstatus.summarize(NAUTILUS), mons=3, osds=3) == []


def test_missing_counts_against_what_is_expected():
    s = cephstatus.summarize(NAUTILUS)
    assert cephstatus.missing(s, mons=3, osds=4) == [
        "3 of 4 OSDs exist (osd-prepare has not created the others)",
        "3 of 4 OSDs up",
        "3 of 4 OSDs in",
    ]


def test_a_status_without_mgr_map_says_so():
    st = copy.deepcopy(NAUTILUS)
    del st["mgrmap"]
    s = cephstatus.summarize(st)
    assert s.mgr_active is None
    assert cephstatus.missing(s, mons=3, osds=3) == ["the status has no mgr map"]


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({}, "no health section"),
        ({"health": {}}, "health has no status"),
        ({"health": {"status": "HEALTH_OK"}}, "no osdmap"),
        ({"health": {"status": "HEALTH_OK"}, "osdmap": {"num_osds": "3"}}, "not a number"),
        ([1, 2], "no health section"),
    ],
)
def test_what_is_not_a_status_is_refused(doc, message):
    with pytest.raises(cephstatus.CephStatusError, match=message):
        cephstatus.summarize(doc)
