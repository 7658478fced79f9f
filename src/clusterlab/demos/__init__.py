"""The meetup demos, in the talk's order: DEMOS maps a demo's name (as in the spec's `demos`
list and `inv demo NAME`) to its Demo, defined as DEMO in the module of the same name
(underscores for dashes)."""

from __future__ import annotations

import importlib

from clusterlab.demos.base import Demo
from clusterlab.spec import DEMOS as DEMOS_IN_SPEC

ORDER = DEMOS_IN_SPEC  # the spec's names, in the talk's order


def module_name(name: str) -> str:
    return f"{__name__}.{name.replace('-', '_')}"


def _load() -> dict[str, Demo]:
    out = {}
    for name in ORDER:
        try:
            module = importlib.import_module(module_name(name))
        except ModuleNotFoundError as exc:
            if exc.name != module_name(name):
                raise  # the module exists and something it imports does not: a real error
            continue  # not written yet: absent from DEMOS, named by missing()
        demo = module.DEMO
        if demo.name != name:
            raise ValueError(f"{module.__name__}.DEMO is named {demo.name!r}, not {name!r}")
        out[name] = demo
    return out


DEMOS: dict[str, Demo] = _load()


def missing() -> list[str]:
    """Demos of the talk that have no module yet."""
    return [n for n in ORDER if n not in DEMOS]
