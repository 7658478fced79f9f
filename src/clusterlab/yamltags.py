"""The `!unsafe` YAML tag in the project's own YAML readers and writers.

Values a lab spec or a bundle puts into a generated inventory are written as `!unsafe`:
Ansible then never evaluates them as templates (its data-tagging docs: "Unsafe or raw
strings"). PyYAML's safe loader does not know the tag; registering it here (imported by
clusterlab/__init__.py) lets yaml.safe_load read hosts.yml into `Unsafe` strings and
yaml.safe_dump write them back with the tag, so a re-written inventory stays marked.
"""

from __future__ import annotations

from typing import Any

import yaml

TAG = "!unsafe"


class Unsafe(str):
    """A string that comes from a spec or bundle: data, never a template."""

    __slots__ = ()


def _construct(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        return Unsafe(loader.construct_scalar(node))
    if isinstance(node, yaml.SequenceNode):
        return [wrap(v) for v in loader.construct_sequence(node, deep=True)]
    return {k: wrap(v) for k, v in loader.construct_mapping(node, deep=True).items()}


def _represent(dumper: yaml.SafeDumper, data: Unsafe) -> yaml.Node:
    return dumper.represent_scalar(TAG, str(data))


def wrap(value: Any, skip_prefix: str | None = None) -> Any:
    """value with every non-empty string in it (not dict keys) made Unsafe; entries whose key
    starts with skip_prefix are left as they are (Ansible's connection variables)."""
    if isinstance(value, str):
        # an empty string carries no template; and Ansible reads `!unsafe ''` as null
        return Unsafe(value) if value else value
    if isinstance(value, list | tuple):
        return [wrap(v, skip_prefix) for v in value]
    if isinstance(value, dict):
        return {
            k: v
            if skip_prefix and isinstance(k, str) and k.startswith(skip_prefix)
            else wrap(v, skip_prefix)
            for k, v in value.items()
        }
    return value


def plain(value: Any) -> Any:
    """value with every Unsafe string turned back into a plain str (for Python readers)."""
    if isinstance(value, str):
        return str(value)
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {plain(k): plain(v) for k, v in value.items()}
    return value


def from_ansible_json(value: Any) -> Any:
    """value as Ansible's JSON gives it (ansible-inventory --list, testinfra's
    get_variables): an unsafe string there is {"__ansible_unsafe": "..."}; the plain
    string back, everywhere in value."""
    if isinstance(value, dict):
        if set(value) == {"__ansible_unsafe"}:
            return value["__ansible_unsafe"]
        return {k: from_ansible_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [from_ansible_json(v) for v in value]
    return value


for _loader in (yaml.SafeLoader, getattr(yaml, "CSafeLoader", None)):
    if _loader is not None:
        _loader.add_constructor(TAG, _construct)
for _dumper in (yaml.SafeDumper, getattr(yaml, "CSafeDumper", None)):
    if _dumper is not None:
        _dumper.add_representer(Unsafe, _represent)
