"""The machine's lab record and the per-lab lock (registry.py), on a record in a temp dir."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from clusterlab import registry
from clusterlab.files import atomic_write
from clusterlab.providers.base import ProviderError

pytestmark = pytest.mark.unit


@pytest.fixture(autouse=True)
def record(tmp_path, monkeypatch):
    monkeypatch.setenv("CLUSTERLAB_RECORD_DIR", str(tmp_path / "rec"))
    return tmp_path / "rec"


def spec(name: str, cidr: str = "10.213.160.0/24", provider: str = "local") -> dict:
    return {"name": name, "provider": provider, "network": {"cidr": cidr}}


def test_claim_records_the_lab_with_slot_named_objects(tmp_path):
    e = registry.claim(spec("lc-one"), tmp_path / "a")
    assert e["state_dir"] == str(tmp_path / "a")
    assert e["names"] == registry.slot_names(e["slot"], "lc-one")
    assert registry.claim(spec("lc-one"), tmp_path / "a") == e  # idempotent
    on_disk = json.loads(registry.record_file().read_text())
    assert on_disk["labs"]["lc-one"]["slot"] == e["slot"]


def test_second_lab_gets_its_own_slot(tmp_path):
    a = registry.claim(spec("lcaa", "10.213.160.0/24"), tmp_path / "a")
    b = registry.claim(spec("lcbb", "10.213.161.0/24"), tmp_path / "b")
    assert a["slot"] != b["slot"]
    assert a["names"]["bridge"] != b["names"]["bridge"]


def test_name_held_by_another_directory_is_refused(tmp_path):
    (tmp_path / "a").mkdir()  # the owner's state dir exists
    registry.claim(spec("lcsame"), tmp_path / "a")
    with pytest.raises(registry.NotOwner, match=str(tmp_path / "a")):
        registry.claim(spec("lcsame"), tmp_path / "b")
    with pytest.raises(registry.NotOwner, match="lives in"):
        registry.require_owner("lcsame", tmp_path / "b")
    registry.require_owner("lcsame", tmp_path / "a")


def test_overlapping_cidr_of_another_lab_is_refused(tmp_path):
    registry.claim(spec("lcnet1", "10.213.162.0/24"), tmp_path / "a")
    with pytest.raises(ProviderError, match="overlaps lab lcnet1"):
        registry.claim(spec("lcnet2", "10.213.162.0/25"), tmp_path / "b")
    assert "lcnet2" not in registry.read()


def test_release_only_by_the_owner(tmp_path):
    registry.claim(spec("lcrel"), tmp_path / "a")
    registry.release("lcrel", tmp_path / "b")
    assert "lcrel" in registry.read()
    registry.release("lcrel", tmp_path / "a")
    assert "lcrel" not in registry.read()


def test_long_names_fit_an_interface_and_stay_apart():
    long = "lc-a-very-long-lab-name"
    names = {registry.slot_names(slot, long)["bridge"] for slot in range(1, 200)}
    assert len(names) == 199
    assert all(len(n) <= registry.IFNAMSIZ for n in names)


def test_corrupt_record_is_one_clear_error(record):
    record.mkdir(parents=True)
    registry.record_file().write_text("{half")
    with pytest.raises(ProviderError, match="is corrupt"):
        registry.read()


def test_atomic_write_leaves_no_temporary(tmp_path):
    target = tmp_path / "x" / "f.json"
    atomic_write(target, "one\n")
    atomic_write(target, "two\n")
    assert target.read_text() == "two\n"
    assert [p.name for p in target.parent.iterdir()] == ["f.json"]


def test_lab_lock_refuses_a_second_process_naming_the_holder(record):
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from clusterlab import registry\n"
            "with registry.lab_lock('lclock'):\n"
            "    print('held', flush=True); sys.stdin.readline()",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={"CLUSTERLAB_RECORD_DIR": str(record), "PATH": "/usr/bin:/bin"},
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with (
            pytest.raises(registry.LabBusy, match=f"PID {holder.pid} "),
            registry.lab_lock("lclock"),
        ):
            pass
    finally:
        holder.communicate("\n")
    with registry.lab_lock("lclock"), registry.lab_lock("lclock"):  # nested: free
        assert registry.lock_path("lclock").read_text().split()[0].isdigit()


def test_a_name_whose_directory_is_gone_is_free_again(tmp_path):
    gone = tmp_path / "gone" / ".clusterlab" / "lcstale"
    gone.mkdir(parents=True)
    first = registry.claim(spec("lcstale"), gone)
    with pytest.raises(registry.NotOwner):
        registry.claim(spec("lcstale"), tmp_path / "b")
    gone.rmdir()  # removed by hand, and no bridge of the lab exists (slot names never made)
    assert not (tmp_path / "b").exists()
    again = registry.claim(spec("lcstale"), tmp_path / "b")
    assert again["state_dir"] == str(tmp_path / "b")
    assert first["state_dir"] != again["state_dir"]
