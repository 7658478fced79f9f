"""`ceph status -f json` -> a small summary, and what a cluster lacks against what the lab expects.

Pure parsing: no Ceph, no kubectl. The verify ceph layer feeds it the toolbox's output; the
Rook stage's waits feed it the same to say what is missing.

Layouts handled (Ceph's own JSON, `ceph status --format json`):
- Octopus (15) and later, so Debian 12's 16.2 and Rook's 19.2/20.2: `osdmap.num_osds`,
  `osdmap.num_up_osds`, `osdmap.num_in_osds`; `mgrmap.available` with `num_standbys`.
- Nautilus (14) and earlier: the same counters one level down, `osdmap.osdmap.*`; the full
  mgr map (`mgrmap.available`, `active_name`, `standbys`).
Both: `health.status`, `health.checks.<NAME>.summary.message`, `quorum_names`.
"""

from __future__ import annotations

from dataclasses import dataclass, field


class CephStatusError(ValueError):
    """The JSON is not `ceph status` output."""


@dataclass(frozen=True)
class Summary:
    health: str  # HEALTH_OK | HEALTH_WARN | HEALTH_ERR
    checks: dict[str, str] = field(default_factory=dict)  # check name -> summary message
    quorum: list[str] = field(default_factory=list)  # mon names in quorum
    mgr_active: bool | None = None  # None: the status has no mgr map
    osds: int = 0
    osds_up: int = 0
    osds_in: int = 0


def _int(value: object, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise CephStatusError(f"{where} is {value!r}, not a number")
    return value


def _osdmap(status: dict) -> dict:
    osdmap = status.get("osdmap")
    if not isinstance(osdmap, dict):
        raise CephStatusError("no osdmap in the status")
    nested = osdmap.get("osdmap")
    return nested if isinstance(nested, dict) and "num_osds" not in osdmap else osdmap


def summarize(status: dict) -> Summary:
    """The parts of `ceph status -f json` (a parsed dict) that say whether the cluster is whole."""
    if not isinstance(status, dict) or not isinstance(status.get("health"), dict):
        raise CephStatusError("no health section: not the output of `ceph status -f json`")
    health = status["health"]
    if "status" not in health:
        raise CephStatusError("health has no status")
    checks = {
        name: ((check or {}).get("summary") or {}).get("message", "")
        for name, check in (health.get("checks") or {}).items()
    }
    osdmap = _osdmap(status)
    mgrmap = status.get("mgrmap")
    mgr_active = (
        bool(mgrmap["available"]) if isinstance(mgrmap, dict) and "available" in mgrmap else None
    )
    return Summary(
        health=str(health["status"]),
        checks=checks,
        quorum=[str(n) for n in status.get("quorum_names") or []],
        mgr_active=mgr_active,
        osds=_int(osdmap.get("num_osds"), "osdmap num_osds"),
        osds_up=_int(osdmap.get("num_up_osds"), "osdmap num_up_osds"),
        osds_in=_int(osdmap.get("num_in_osds"), "osdmap num_in_osds"),
    )


def missing(summary: Summary, *, mons: int, osds: int) -> list[str]:
    """What the cluster lacks against `mons` mons in quorum and `osds` OSDs up and in, one
    sentence each; health checks are named with their message. Empty: nothing is missing."""
    out = []
    if len(summary.quorum) < mons:
        have = ", ".join(summary.quorum) or "none"
        out.append(f"{len(summary.quorum)} of {mons} mons in quorum ({have})")
    if summary.mgr_active is False:
        out.append("no mgr is active")
    elif summary.mgr_active is None:
        out.append("the status has no mgr map")
    if summary.osds < osds:
        out.append(f"{summary.osds} of {osds} OSDs exist (osd-prepare has not created the others)")
    if summary.osds_up < osds:
        out.append(f"{summary.osds_up} of {osds} OSDs up")
    if summary.osds_in < osds:
        out.append(f"{summary.osds_in} of {osds} OSDs in")
    if summary.health != "HEALTH_OK":
        named = "; ".join(f"{name}: {msg}" for name, msg in sorted(summary.checks.items()))
        out.append(f"{summary.health}" + (f" ({named})" if named else ""))
    return out
