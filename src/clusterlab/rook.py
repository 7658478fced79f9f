"""The Rook stage's decisions that are easier to state (and test) in Python than in Jinja:
which disks each OSD host gives Ceph, and the two things taken from Rook's pinned upstream
manifests before they are applied (the CRD names to wait for, the operator settings the lab
owns). Used by the rook roles' filter plugins on the controller.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

import yaml

# The operator's settings ConfigMap in operator.yaml (namespace rook-ceph).
OPERATOR_SETTINGS = ("ConfigMap", "rook-ceph-operator-config")


class RookError(ValueError):
    """A decision that cannot be made from what it was given (the message says why)."""


def device_name(path: str) -> str:
    """The name a CephCluster's storage.nodes[].devices[] gives a lab disk.

    A kernel name (/dev/sdb) is written as Rook's examples do, without /dev/ (sdb). Any
    other path (/dev/disk/by-id/wwn-…, /dev/mapper/…) is passed whole: Rook's OSD prepare
    job (pkg/daemon/ceph/osd/daemon.go, getAvailableDevices) matches a desired device by
    its kernel name, by /dev/<kernel name>, or against the device's udev links only when
    the desired name starts with /dev/. A name like "disk/by-id/wwn-…" matches nothing and
    the node gets no OSD.
    """
    rest = path.removeprefix("/dev/")
    return rest if rest and "/" not in rest else path


def ceph_disks(
    host_disks: Mapping[str, Iterable[str]],
    device_filter: str = "",
    sizes: Mapping[str, Mapping[str, int]] | None = None,
) -> list[dict]:
    """The disks the lab gives Ceph, in inventory order: one dict per disk with
    host, name (the CephCluster's device name: see device_name), path, size (bytes, or None
    when the inventory does not know it) and pv (the name of its static PV in pvc mode).

    host_disks: host -> its lab_disks (/dev/ paths); sizes: host -> lab_disk_sizes.
    device_filter only narrows: a disk is kept when the regular expression finds its kernel
    name (Rook's deviceFilter semantics); an empty filter keeps every disk.
    """
    try:
        pattern = re.compile(device_filter or "")
    except re.error as exc:
        raise RookError(
            f"rook.device_filter {device_filter!r} is not a regular expression: {exc}"
        ) from exc
    sizes = sizes or {}
    out = []
    for host, paths in host_disks.items():
        for entry in paths or []:
            path = str(entry)
            if not path.startswith("/dev/"):
                raise RookError(f"{host}: lab disk {path!r} is not a /dev/ path")
            name = device_name(path)
            if not pattern.search(name):
                continue
            size = (sizes.get(host) or {}).get(path)
            out.append(
                {
                    "host": str(host),
                    "name": name,
                    "path": path,
                    "size": int(size) if size is not None else None,
                    "pv": re.sub(
                        r"[^a-z0-9.-]+", "-", f"{host}-{path.removeprefix('/dev/')}".lower()
                    ).strip("-."),
                }
            )
    return out


def _documents(text: str) -> list[dict]:
    try:
        docs = [d for d in yaml.safe_load_all(text) if d]
    except yaml.YAMLError as exc:
        raise RookError(f"not a YAML manifest: {exc}") from exc
    if not all(isinstance(d, dict) and "kind" in d for d in docs):
        raise RookError("not a Kubernetes manifest: a document has no kind")
    return docs


def crd_names(text: str) -> list[str]:
    """Names of the CustomResourceDefinitions in a manifest, in its order."""
    return [
        d["metadata"]["name"] for d in _documents(text) if d["kind"] == "CustomResourceDefinition"
    ]


def without_settings(text: str, keys: Iterable[str]) -> str:
    """operator.yaml with the given keys taken out of its operator settings ConfigMap.

    The lab applies those keys itself under its own field manager. Left in upstream's copy,
    two server-side applies would take the same key back and forth on every run (upstream's
    ROOK_CEPH_ALLOW_LOOP_DEVICES "false" against the local lab's "true"), and the operator
    would reload its settings each time. Everything else is kept as upstream wrote it.
    """
    docs = _documents(text)
    found = [d for d in docs if (d["kind"], d.get("metadata", {}).get("name")) == OPERATOR_SETTINGS]
    if len(found) != 1:
        raise RookError(
            f"expected one {OPERATOR_SETTINGS[0]} {OPERATOR_SETTINGS[1]} in the operator "
            f"manifest, found {len(found)}: the pinned operator.yaml is not the one clusterlab knows"
        )
    data = found[0].get("data") or {}
    for key in keys:
        data.pop(key, None)
    found[0]["data"] = data
    return yaml.safe_dump_all(docs, sort_keys=False, default_flow_style=False)
