"""`clusterlab init`: a commented lab spec to start from, made from an example lab."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path

import yaml

from clusterlab import files, paths
from clusterlab.providers.base import ProviderError
from clusterlab.spec import (
    FIELDS,
    REQUIRED,
    SpecError,
    check_lab_name,
    load_spec_file,
    load_spec_text,
)

# Optional sections shown commented out, with their defaults, when the example leaves them out.
OPTIONAL_SECTIONS = ("kubernetes", "rook", "artifacts")


def _used_networks() -> list[ipaddress.IPv4Network]:
    nets = []
    for lab in paths.known_labs():
        try:
            nets.append(
                ipaddress.ip_network(load_spec_file(paths.lab_spec_file(lab))["network"]["cidr"])
            )
        except (SpecError, ValueError, KeyError):
            continue  # a broken lab of the user's does not stop init
    return nets


def free_network(start: ipaddress.IPv4Network) -> ipaddress.IPv4Network:
    """`start`, or the next network of the same size that no known lab uses."""
    used = _used_networks()
    net = start
    while any(net.overlaps(u) for u in used):
        net = ipaddress.ip_network((int(net.network_address) + net.num_addresses, net.prefixlen))
    return net


def _commented(section: str) -> list[str]:
    lines = [f"# {section}:"]
    for path, field in FIELDS.items():
        if not path.startswith(section + "."):
            continue
        if field.default is None or field.default is REQUIRED:
            value = f"<{field.kind}>"
        else:
            value = (
                yaml.safe_dump(field.default, default_flow_style=True)
                .strip()
                .removesuffix("...")
                .strip()
            )
        lines.append(f"#   {path.split('.', 1)[1]}: {value}  # {field.doc}")
    return lines


def lab_text(name: str, example: str) -> str:
    """The spec text of a new lab NAME copied from the lab EXAMPLE, with comments; validated."""
    check_lab_name(name, "(init) name")
    check_lab_name(example, "(init) --from")
    source = paths.lab_spec_file(example)
    if not source.is_file():
        raise SpecError(
            [f"(init): no example lab named {example!r} (known: {', '.join(paths.known_labs())})"]
        )
    body = source.read_text().removeprefix("---\n")
    raw = yaml.safe_load(body)
    body = re.sub(r"(?m)^name:.*$", f"name: {name}", body, count=1)
    body, note = _network(
        body, raw, ipaddress.ip_network(load_spec_file(source)["network"]["cidr"])
    )
    header = [
        "---",
        f"# Lab {name}, made by `clusterlab init` from the lab {example!r}. Edit it, then:",
        f"#   clusterlab spec --lab {name}    validates it and prints it with every default",
        f"#   clusterlab up --lab {name}      builds it; clusterlab down --lab {name} removes it",
        "# Every field is explained by `clusterlab spec --reference`.",
        *note,
    ]
    tail = []
    for section in OPTIONAL_SECTIONS:
        if section not in raw:
            tail += ["", *_commented(section)]
    text = "\n".join(header) + "\n" + body + ("\n".join(tail) + "\n" if tail else "")
    load_spec_text(text, source=f"inventories/{name}/lab.yml")  # raises SpecError: nothing written
    return text


def _network(body: str, raw: dict, old: ipaddress.IPv4Network) -> tuple[str, list[str]]:
    """A network no other lab uses, except on static labs: there network.cidr and the
    addresses are the machines' own, which only the user knows (header lines say so)."""
    if raw.get("provider") == "static":
        return body, [
            "# Static lab: network.cidr, each node's address, user, key_file and disk devices",
            "# are your machines' own: replace the example's values before `clusterlab up`.",
        ]
    new = free_network(old)
    if "network" in raw:
        body = body.replace(f"cidr: {old}", f"cidr: {new}  # unused by your other labs", 1)
    else:
        body += f"network:\n  cidr: {new}  # unused by your other labs\n"
    return body, []


def create(name: str, example: str) -> Path:
    """Write inventories/NAME/lab.yml under the project directory; never overwrite.
    NAME and EXAMPLE are checked before they name any path."""
    check_lab_name(name, "(init) name")
    check_lab_name(example, "(init) --from")
    target = paths.project_dir() / "inventories" / name / "lab.yml"
    if target.exists():
        raise ProviderError(f"{target} exists; not overwritten")
    text = lab_text(name, example)
    files.atomic_write(target, text)
    return target
