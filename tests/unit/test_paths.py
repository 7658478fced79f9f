"""Where labs and state are found (the user's directory, $CLUSTERLAB_*, the examples) and
`clusterlab init`'s starting spec."""

from __future__ import annotations

import re

import pytest
import yaml

from clusterlab import paths, scaffold
from clusterlab.providers import ProviderError
from clusterlab.spec import SpecError, load_spec_file, load_spec_text

pytestmark = pytest.mark.unit


def lab(root, name: str) -> None:
    d = root / name
    d.mkdir(parents=True)
    (d / "lab.yml").write_text(f"name: {name}\nnodes: {{count: 1}}\n")


@pytest.fixture
def user_dir(tmp_path, monkeypatch):
    """An empty working directory, no CLUSTERLAB_* variables."""
    for var in ("CLUSTERLAB_INVENTORIES", "CLUSTERLAB_STATE"):
        monkeypatch.delenv(var, raising=False)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return work


def test_labs_are_looked_up_here_then_in_the_variable_then_in_the_examples(
    user_dir, tmp_path, monkeypatch
):
    lab(user_dir / "inventories", "mine")
    lab(user_dir / "inventories", "default")  # shadows the example of that name
    elsewhere = tmp_path / "elsewhere"
    lab(elsewhere, "mine")
    lab(elsewhere, "shared")
    monkeypatch.setenv("CLUSTERLAB_INVENTORIES", str(elsewhere))
    assert paths.inventory_roots() == [user_dir / "inventories", elsewhere, paths.INVENTORIES]
    assert paths.lab_spec_file("mine") == user_dir / "inventories" / "mine" / "lab.yml"
    assert paths.lab_spec_file("shared") == elsewhere / "shared" / "lab.yml"
    assert paths.lab_spec_file("default") == user_dir / "inventories" / "default" / "lab.yml"
    assert paths.lab_spec_file("meetup-pvc") == paths.INVENTORIES / "meetup-pvc" / "lab.yml"
    assert {"mine", "shared", "default", "meetup-pvc"} <= set(paths.known_labs())


def test_state_goes_to_the_users_directory(user_dir, tmp_path, monkeypatch):
    assert paths.state_dir("x") == user_dir / ".clusterlab" / "x"
    monkeypatch.setenv("CLUSTERLAB_STATE", str(tmp_path / "st"))
    assert paths.state_dir("x") == tmp_path / "st" / "x"


def test_only_the_current_directory_is_the_project(user_dir, monkeypatch):
    """No search upwards: an unrelated inventories/ above is not the project's."""
    lab(user_dir / "inventories", "mine")
    deeper = user_dir / "notes"
    deeper.mkdir()
    monkeypatch.chdir(deeper)
    assert paths.inventory_roots()[0] == deeper / "inventories"
    assert paths.lab_spec_file("mine") == deeper / "inventories" / "mine" / "lab.yml"
    assert not paths.lab_spec_file("mine").exists()
    assert paths.state_root() == deeper / ".clusterlab"


def test_the_checkout_runs_its_own_files():
    assert paths.checkout() == paths.ROOT
    assert not paths.BUNDLED.exists(), "a checkout never holds the wheel's copy"
    for name in paths.SHIPPED:
        assert (paths.ROOT / name).exists(), name


def test_init_writes_a_commented_valid_spec_from_an_example(user_dir):
    path = scaffold.create("mylab", "default")
    assert path == user_dir / "inventories" / "mylab" / "lab.yml"
    text = path.read_text()
    spec = load_spec_file(path)
    example = load_spec_file(paths.INVENTORIES / "default" / "lab.yml")
    assert spec["name"] == "mylab"

    def shape(s: dict) -> list:
        return [(n["name"], n["roles"], n["disks"]) for n in s["nodes"]]

    assert shape(spec) == shape(example)
    assert spec["network"]["cidr"] != example["network"]["cidr"], "its own network"
    assert "# kubernetes:" in text
    assert "# artifacts:" in text
    # the commented sections hold valid defaults: uncommented, the spec stays valid and equal
    section = re.search(r"(?ms)^# kubernetes:\n(?:^#   .*\n)+", text)[0]
    uncommented = "\n".join(
        line[2:].split("  # ")[0] for line in section.splitlines() if "<" not in line
    )
    assert load_spec_text(text + uncommented + "\n") == spec
    assert yaml.safe_load(text)["name"] == "mylab"


def test_init_never_overwrites_and_refuses_a_bad_name(user_dir):
    scaffold.create("mylab", "default")
    before = (user_dir / "inventories" / "mylab" / "lab.yml").read_text()
    with pytest.raises(ProviderError, match="exists; not overwritten"):
        scaffold.create("mylab", "meetup-pvc")
    assert (user_dir / "inventories" / "mylab" / "lab.yml").read_text() == before
    with pytest.raises(SpecError, match="not a valid lab name"):
        scaffold.create("My_Lab", "default")
    assert not (user_dir / "inventories" / "My_Lab").exists()
    with pytest.raises(SpecError, match="no example lab named 'nope'"):
        scaffold.create("other", "nope")


def test_init_picks_a_network_no_other_lab_uses(user_dir):
    first = load_spec_file(scaffold.create("one", "default"))["network"]["cidr"]
    second = load_spec_file(scaffold.create("two", "default"))["network"]["cidr"]
    used = {load_spec_file(paths.lab_spec_file(n))["network"]["cidr"] for n in paths.known_labs()}
    assert len(used) == len(paths.known_labs()), "every lab, examples included, has its own"
    assert first != second
