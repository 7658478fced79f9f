"""Reading kubectl's output in demo checks: custom-columns tables and /proc/mounts lines."""

from __future__ import annotations


def table(text: str) -> list[dict[str, str]]:
    """`kubectl get … -o custom-columns=A:…,B:…` output -> one dict per row (header -> value).

    Values are single words (kubectl prints `<none>` for a missing field); a last column may
    hold words separated by spaces (an event's message): it keeps the rest of the line. A
    repeated header (kubectl prints one per resource type) is skipped."""
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        return []
    header = lines[0].split()
    rows = []
    for line in lines[1:]:
        if line.split() == header:
            continue
        words = line.split(None, len(header) - 1)
        rows.append(dict(zip(header, words + [""] * (len(header) - len(words)), strict=True)))
    return rows


def mount_of(text: str, target: str) -> tuple[str, str] | None:
    """(source, filesystem type) of the mount at target in /proc/mounts-shaped text."""
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[1] == target:
            return parts[0], parts[2]
    return None


def lines_with(text: str, *words: str) -> str:
    """The lines of text containing any of words (the header line kept), for `show`."""
    lines = text.splitlines()
    keep = [line for line in lines[1:] if any(w in line for w in words)]
    return "\n".join(lines[:1] + keep)
