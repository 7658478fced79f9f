"""Strict validation of custom objects against the pinned Rook CRDs' openAPIV3Schema.

The API server prunes a field its structural schema does not declare; here an undeclared
field is a failure instead (every object schema that declares properties, or declares none
and does not keep unknown fields, gets additionalProperties: false), so a misspelled or
misplaced key in what clusterlab renders cannot slip through as it would on a cluster.
`nullable` becomes a null alternative; formats (int64, quantity, ...) are not checked, and
neither are CEL rules (x-kubernetes-validations), which need an API server.
"""

from __future__ import annotations

import copy
import json
from functools import cache

import jsonschema

from clusterlab import paths

SCHEMAS = paths.ROOT / "tests" / "fixtures" / "rook-v1.20.6" / "crd-schemas.json"
METADATA_KEYS = {"name", "namespace", "labels", "annotations", "generateName"}


def _strict(schema: dict, *, root: bool = False) -> dict:
    s = {k: v for k, v in schema.items() if not k.startswith("x-kubernetes-validations")}
    for key in ("properties", "patternProperties"):
        if key in s:
            s[key] = {
                name: ({"type": "object"} if root and name == "metadata" else _strict(sub))
                for name, sub in s[key].items()
            }
    if isinstance(s.get("additionalProperties"), dict):
        s["additionalProperties"] = _strict(s["additionalProperties"])
    if isinstance(s.get("items"), dict):
        s["items"] = _strict(s["items"])
    for key in ("anyOf", "allOf", "oneOf"):
        if key in s:
            s[key] = [_strict(sub) for sub in s[key]]
    keeps_unknown = s.get("x-kubernetes-preserve-unknown-fields") is True
    if s.get("type") == "object" and not keeps_unknown and "additionalProperties" not in s:
        s["additionalProperties"] = False
    if s.pop("nullable", False):
        s = {"anyOf": [{"type": "null"}, s]}
    return s


@cache
def pinned() -> dict:
    """{'crds': [names], 'schemas': {'group/version/Kind': openAPIV3Schema}} (SOURCE.md)."""
    return json.loads(SCHEMAS.read_text())


@cache
def validators() -> dict[tuple[str, str], jsonschema.Draft7Validator]:
    """(apiVersion, kind) -> a strict validator, for every served version of every CRD."""
    out = {}
    for key, schema in pinned()["schemas"].items():
        group, version, kind = key.split("/")
        strict = _strict(copy.deepcopy(schema), root=True)
        jsonschema.Draft7Validator.check_schema(strict)
        out[(f"{group}/{version}", kind)] = jsonschema.Draft7Validator(strict)
    return out


def problems(doc: dict) -> list[str]:
    """Every way doc breaks its CRD's schema, one line each ('' path = the object itself)."""
    key = (doc.get("apiVersion"), doc.get("kind"))
    table = validators()
    if key not in table:
        return [f"no CRD serves {key[0]} {key[1]}"]
    out = []
    for found in table[key].iter_errors(doc):
        error = found
        while error.context:  # anyOf (e.g. nullable): say what broke deepest inside
            error = max(error.context, key=lambda e: (len(e.absolute_path), e.validator != "type"))
        out.append(f"{'.'.join(str(p) for p in error.absolute_path) or '<root>'}: {error.message}")
    meta = doc.get("metadata") or {}
    out += [f"metadata.{k}: unknown field" for k in sorted(set(meta) - METADATA_KEYS)]
    if not meta.get("name") and not meta.get("generateName"):
        out.append("metadata.name: missing")
    return out
