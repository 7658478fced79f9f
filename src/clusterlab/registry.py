"""The machine's labs: one record of every lab on this machine, and one lock per lab.

A lab name is one lab per machine. The record (/var/lib/clusterlab/labs.json, or
$CLUSTERLAB_RECORD_DIR/labs.json) maps each name to the state directory that owns it, its
provider, network and the names of the machine-wide objects it made. It is changed only under
the host lock (labs.lock beside it) and written whole (a temporary file renamed over it), so a
reader never sees half of it. `up` claims a name before it creates anything; `down` releases
it after the last object is gone.

Every command that changes or reads a lab holds the lab's lock (<run dir>/locks/NAME.lock),
which names the holder (PID and command line) for the command that is refused.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import ipaddress
import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from clusterlab import procs
from clusterlab.files import atomic_write
from clusterlab.providers.base import ProviderError

RECORD_DIR = Path("/var/lib/clusterlab")
RUN_DIR = Path("/run/clusterlab")
IFNAMSIZ = 15  # longest interface name, without the terminating NUL


class LabBusy(ProviderError):
    """Another command holds the lab's lock."""


class NotOwner(ProviderError):
    """The lab name belongs to another state directory on this machine."""


def record_dir() -> Path:
    env = os.environ.get("CLUSTERLAB_RECORD_DIR")
    return Path(env) if env else RECORD_DIR


def record_file() -> Path:
    return record_dir() / "labs.json"


def locks_dir() -> Path:
    env = os.environ.get("CLUSTERLAB_RECORD_DIR")
    return (Path(env) if env else RUN_DIR) / "locks"


@contextlib.contextmanager
def host_lock() -> Iterator[None]:
    """The record's lock: claims, releases and network checks of every lab, one at a time."""
    record_dir().mkdir(parents=True, exist_ok=True)
    with (record_dir() / "labs.lock").open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def read() -> dict[str, dict]:
    """name -> entry of every recorded lab; a record that is not ours is reported, never used."""
    path = record_file()
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProviderError(
            f"the machine's lab record {path} is corrupt ({exc}); every lab's state dir still "
            "holds its lab: move the file away and run `up` again in each lab's directory"
        ) from None
    labs = data.get("labs") if isinstance(data, dict) else None
    if not isinstance(labs, dict):
        raise ProviderError(f"the machine's lab record {path} has no 'labs' mapping; move it away")
    return labs


def _write(labs: dict[str, dict]) -> None:
    atomic_write(record_file(), json.dumps({"labs": labs}, indent=2, sort_keys=True) + "\n")


def entry(name: str) -> dict | None:
    return read().get(name)


def owner_elsewhere(name: str, state_dir: Path) -> Path | None:
    """The state dir that owns lab `name` when it is not `state_dir`, else None."""
    e = entry(name)
    if e and Path(e["state_dir"]) != state_dir:
        return Path(e["state_dir"])
    return None


def not_owner_message(name: str, owner: Path) -> str:
    return (
        f"lab {name} lives in {owner.parent.parent} (state {owner}), not in this directory; "
        f"run the command there (nothing here was changed)"
    )


def require_owner(name: str, state_dir: Path) -> None:
    owner = owner_elsewhere(name, state_dir)
    if owner:
        raise NotOwner(not_owner_message(name, owner))


def slot_names(slot: int, lab: str) -> dict[str, str]:
    """Machine-wide names of a local lab's objects: the slot (unique on the machine) keeps
    them apart even where the lab's name must be shortened (an interface name has 15 bytes)."""
    bridge = f"cl-{slot}-{lab}"[:IFNAMSIZ].rstrip("-")
    return {
        "bridge": bridge,
        "table": f"clusterlab_{slot}_{lab.replace('-', '_')}",
        "cgroup": f"clusterlab.{slot}.{lab}",
        "machine": f"cl{slot}-{lab}",
    }


def legacy_names(lab: str) -> dict[str, str]:
    """The names earlier clusterlab versions gave a lab's objects (adopted by a later `up`)."""
    bridge = f"cl-{lab}"
    if len(bridge) > IFNAMSIZ:
        bridge = f"cl-{lab[:7]}-{hashlib.sha1(lab.encode()).hexdigest()[:4]}"  # noqa: S324
    return {
        "bridge": bridge,
        "table": "clusterlab_" + lab.replace("-", "_"),
        "cgroup": f"clusterlab.{lab}",
        "machine": lab,
    }


def _free_slot(labs: dict[str, dict]) -> int:
    used = {e.get("slot") for e in labs.values()}
    net = Path("/sys/class/net")
    slot = 1
    while slot in used or any(net.glob(f"cl-{slot}-*")):
        slot += 1
    return slot


def stale(e: dict) -> bool:
    """A recorded lab whose state dir was deleted and whose bridge (if any) is gone."""
    bridge = (e.get("names") or {}).get("bridge")
    return not Path(e["state_dir"]).exists() and not (
        bridge and Path(f"/sys/class/net/{bridge}").exists()
    )


def claim(
    spec: dict, state_dir: Path, legacy: dict[str, str] | None = None
) -> dict:  # the lab's entry
    """Claim lab spec['name'] for state_dir (or confirm the claim); refuse a name another
    directory holds and a local lab whose cidr overlaps another recorded lab's."""
    name = spec["name"]
    with host_lock():
        labs = read()
        own = labs.get(name)
        if own and Path(own["state_dir"]) != state_dir and stale(own):
            own = None  # its directory and objects are gone: the name is free again
        if own and Path(own["state_dir"]) != state_dir:
            raise NotOwner(
                f"lab name {name} is in use on this machine by {own['state_dir']}; "
                "bring it down there, or give this lab another name"
            )
        cidr = spec.get("network", {}).get("cidr") if spec["provider"] == "local" else None
        if cidr:
            mine = ipaddress.IPv4Network(cidr)
            for other, e in labs.items():
                if (
                    other != name
                    and e.get("cidr")
                    and mine.overlaps(ipaddress.IPv4Network(e["cidr"]))
                ):
                    raise ProviderError(
                        f"network.cidr {cidr} overlaps lab {other}'s {e['cidr']} "
                        f"({e['state_dir']}); choose another private /24 in lab.yml"
                    )
        new = dict(own or {})
        new.update(state_dir=str(state_dir), provider=spec["provider"], cidr=cidr)
        if spec["provider"] == "local" and "names" not in new:
            if legacy:
                new.update(slot=None, names=legacy)
            else:
                slot = _free_slot(labs)
                new.update(slot=slot, names=slot_names(slot, name))
        new.setdefault("claimed", time.strftime("%Y-%m-%dT%H:%M:%S%z"))
        if new != own:
            labs[name] = new
            _write(labs)
        return new


def release(name: str, state_dir: Path) -> None:
    """Forget lab `name` when state_dir owns it (after `down` removed everything it made)."""
    with host_lock():
        labs = read()
        e = labs.get(name)
        if e and Path(e["state_dir"]) == state_dir:
            del labs[name]
            _write(labs)


# ------------------------------------------------------------------ per-lab lock
_HELD: dict[str, object] = {}  # lab -> open lock file, held by this process


def lock_path(name: str) -> Path:
    return locks_dir() / f"{name}.lock"


def holder(name: str) -> str:
    """'PID N (command)' of the lock's holder, as it wrote itself into the lock file."""
    try:
        text = lock_path(name).read_text().strip()
    except OSError:
        return "another process"
    pid, _, cmd = text.partition(" ")
    return f"PID {pid} ({cmd})" if pid.isdigit() else "another process"


@contextlib.contextmanager
def lab_lock(name: str) -> Iterator[None]:
    """Hold lab `name`'s lock for the block (nested use in one process is free); a lab whose
    lock another process holds is refused, naming it."""
    if name in _HELD:
        yield
        return
    locks_dir().mkdir(parents=True, exist_ok=True)
    path = lock_path(name)
    fh = path.open("a+")
    try:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LabBusy(
                f"lab {name} is busy: {holder(name)} is working on it (lock {path}); "
                "wait for it to finish"
            ) from None
        fh.seek(0)
        fh.truncate()
        argv = procs.cmdline(os.getpid()) or sys.argv
        fh.write(f"{os.getpid()} {' '.join(a for a in argv if a)}\n")
        fh.flush()
        _HELD[name] = fh
        try:
            yield
        finally:
            del _HELD[name]
            with contextlib.suppress(OSError):
                fh.seek(0)
                fh.truncate()
    finally:
        fh.close()
