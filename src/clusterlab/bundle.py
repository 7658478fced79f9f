"""Offline bundles: every artifact of one or more labs in one directory, made on a connected
machine (`inv artifacts fetch`) and served to a lab that cannot reach the internet.

Layout (several labs may share one bundle; the index merges):
  index.json                        what is present: files by URL, images by reference
  files/<host>/<path>               upstream https://<host>/<path> (artifacts.mirror_url layout)
  images/<host>/<repo>/<tag>.tar    an OCI archive written by skopeo

An artifact counts as present only when its bytes are verified: a file's sha256 is the
table's, an image archive's sha256 is the one recorded when skopeo finished writing it.
Downloads go to `<name>.part` first; an interrupted file download resumes from its part.
"""

from __future__ import annotations

import fcntl
import hashlib
import ipaddress
import json
import os
import re
import shutil
import subprocess
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from clusterlab import progname
from clusterlab.artifacts import Artifacts, FileArtifact, ImageArtifact
from clusterlab.spec import IMAGE_REF_RE, URL_RE, SpecError, unsafe_text

INDEX = "index.json"
FORMAT = 1
CHUNK = 1 << 20


class BundleError(Exception):
    """A bundle cannot be made or used; the message names what and why."""


def file_path(f: FileArtifact) -> str:
    """Where a file lives in the bundle: the mirror layout <host>/<path> under files/."""
    return "files/" + f.url.split("://", 1)[1]


def image_path(i: ImageArtifact) -> str:
    """images/<host>/<repo>/<tag>.tar; a host's port is written host_port (skopeo's
    oci-archive:PATH reference would take a colon in PATH for the start of an image name)."""
    return f"images/{i.host.replace(':', '_')}/{i.repository}/{i.tag}.tar"


def read_index(bundle: Path) -> dict[str, Any]:
    """The bundle's index (an empty one for a new bundle)."""
    path = Path(bundle) / INDEX
    if not path.is_file():
        return {"format": FORMAT, "files": {}, "images": {}}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise BundleError(f"{path}: not a bundle index ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        found = data.get("format") if isinstance(data, dict) else data
        raise BundleError(f"{path}: bundle format {found!r}, expected {FORMAT}")
    data.setdefault("files", {})
    data.setdefault("images", {})
    problems = index_problems(data)
    if problems:
        raise BundleIndexError([f"{path}: {p}" for p in problems])
    return data


class BundleIndexError(SpecError, BundleError):
    """A bundle index whose entries are not data clusterlab wrote (bad spec data: exit 2)."""


_SHA256 = re.compile(r"[0-9a-f]{64}")
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_BUNDLE_PATH = re.compile(r"(?:files|images)/[A-Za-z0-9._+,:@=~/-]+")


def _bundle_path(value: Any, top: str) -> str | None:
    if not isinstance(value, str) or not _BUNDLE_PATH.fullmatch(value):
        return f"{value!r} is not a path under {top}/"
    if not value.startswith(top + "/") or ".." in value.split("/") or "//" in value:
        return f"{value!r} is not a path under {top}/"
    return None


def index_problems(data: dict[str, Any]) -> list[str]:
    """Every problem of a bundle index, each as `<entry path>: <what>`: a bundle is data
    from a stranger. Files are keyed by http(s) URL, images by a full image reference (the
    distribution reference grammar); paths stay inside files/ or images/; sha256 and digests
    are hex; no string carries template markup or control characters."""
    out: list[str] = []
    for key in ("files", "images"):
        if not isinstance(data.get(key), dict):
            out.append(f"{key}: expected an object")
    if out:
        return out

    def strings(where: str, value: Any) -> None:
        if isinstance(value, str):
            problem = unsafe_text(value)
            if problem:
                out.append(f"{where or '(top)'}: {problem}")
        elif isinstance(value, dict):
            for k, v in value.items():
                inner = f"{where}.{k}" if where and not isinstance(v, dict) else f"{where}[{k!r}]"
                if not where:
                    inner = str(k)
                strings(f"{where}[{k!r}]" if where else str(k), k)
                strings(inner, v)
        elif isinstance(value, list):
            for i, v in enumerate(value):
                strings(f"{where}[{i}]", v)

    strings("", data)
    if out:
        return out

    for url, entry in data["files"].items():
        where = f"files[{url!r}]"
        if not URL_RE.fullmatch(url):
            out.append(f"{where}: not an http:// or https:// URL")
        if not isinstance(entry, dict):
            out.append(f"{where}: expected an object")
            continue
        problem = _bundle_path(entry.get("path"), "files")
        if problem:
            out.append(f"{where}.path: {problem}")
        if not isinstance(entry.get("sha256"), str) or not _SHA256.fullmatch(entry["sha256"]):
            out.append(f"{where}.sha256: {entry.get('sha256')!r} is not a sha256 (64 hex digits)")
    for ref, entry in data["images"].items():
        where = f"images[{ref!r}]"
        if not IMAGE_REF_RE.fullmatch(ref) or "/" not in ref or ":" not in ref.split("/")[-1]:
            out.append(f"{where}: not a full image reference like registry.k8s.io/pause:3.10.1")
        if not isinstance(entry, dict):
            out.append(f"{where}: expected an object")
            continue
        problem = _bundle_path(entry.get("path"), "images")
        if problem:
            out.append(f"{where}.path: {problem}")
        for field in ("digest", "pinned"):
            value = entry.get(field)
            if value is not None and (not isinstance(value, str) or not _DIGEST.fullmatch(value)):
                out.append(f"{where}.{field}: {value!r} is not a sha256:<64 hex> digest")
        value = entry.get("sha256")
        if value is not None and (not isinstance(value, str) or not _SHA256.fullmatch(value)):
            out.append(f"{where}.sha256: {value!r} is not a sha256 (64 hex digits)")
    return out


def write_index(bundle: Path, index: dict[str, Any]) -> None:
    """Replace the index atomically, so an interrupted fetch leaves a valid one."""
    fd, tmp = tempfile.mkstemp(dir=bundle, prefix=".index.", suffix=".tmp")
    with os.fdopen(fd, "w") as out:
        json.dump(index, out, indent=1, sort_keys=True)
        out.write("\n")
    os.chmod(tmp, 0o644)
    os.replace(tmp, Path(bundle) / INDEX)


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(CHUNK):
            h.update(block)
    return h.hexdigest()


def _loopback(host: str) -> bool:
    name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name.strip("[]")).is_loopback
    except ValueError:
        return False


RESUMES = 3  # how often one fetch resumes a body the server cut short


def _expected_size(resp: Any, have: int) -> int | None:
    """The whole file's size from a 206's Content-Range (…/total) or a 200's Content-Length."""
    if resp.status == 206:
        total = (resp.headers.get("Content-Range") or "").rpartition("/")[2]
        return int(total) if total.isdigit() else None
    length = resp.headers.get("Content-Length")
    return int(length) if length and length.isdigit() else None


def _download(url: str, part: Path, timeout: float) -> None:
    """Append the rest of `url` to `part` (resuming where a previous run stopped).

    A connection closed cleanly before the body's end is no error for http.client (its read
    returns b"" early, cpython Lib/http/client.py readinto): the part is measured against
    Content-Length/Content-Range and resumed with a Range request, RESUMES times, then kept
    for the next run."""
    if not url.startswith(("http://", "https://")):
        raise BundleError(f"{url}: only http(s) URLs are fetched")
    for _attempt in range(RESUMES + 1):
        have = part.stat().st_size if part.exists() else 0
        req = urllib.request.Request(  # noqa: S310 - http(s) only, checked above
            url, headers={"Range": f"bytes={have}-"} if have else {}
        )
        try:
            resp = urllib.request.urlopen(req, timeout=timeout)  # noqa: S310 - table URLs
        except urllib.error.HTTPError as exc:
            if exc.code == 416 and have:  # the part already holds every byte
                return
            raise
        with resp:
            expected = _expected_size(resp, have)
            mode = "ab" if have and resp.status == 206 else "wb"  # no ranges: start again
            with open(part, mode) as out:
                shutil.copyfileobj(resp, out, CHUNK)
        size = part.stat().st_size
        if expected is None or size >= expected:
            return
    raise BundleError(
        f"cannot download {url}: the server closed the connection after {size} of "
        f"{expected} bytes (kept {part.name} to resume)"
    )


def fetch_file(f: FileArtifact, bundle: Path, timeout: float = 60) -> bool:
    """Make the file present and verified; True when it had to be downloaded."""
    dest = bundle / file_path(f)
    if dest.is_file() and sha256_of(dest) == f.sha256:
        return False
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    try:
        _download(f.url, part, timeout)
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", None) or exc
        kept = f" (kept {part.name} to resume)" if part.exists() else ""
        raise BundleError(f"cannot download {f.url}: {reason}{kept}") from None
    got = sha256_of(part)
    if got != f.sha256:
        part.unlink()
        raise BundleError(f"{f.url}: sha256 {got} is not the pinned {f.sha256}; not kept")
    os.replace(part, dest)
    return True


def _skopeo(args: list[str], timeout: float) -> subprocess.CompletedProcess:
    if not shutil.which("skopeo"):
        raise BundleError("skopeo is missing: apt-get install skopeo")
    try:
        return subprocess.run(
            ["skopeo", *args], capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        raise BundleError(f"skopeo {' '.join(args)}: no result after {timeout:.0f} s") from None


def skopeo_message(text: str) -> str:
    """The message of skopeo's last log line (`time=… level=fatal msg="…"`), else the text."""
    found = re.findall(r'msg="((?:[^"\\]|\\.)*)"', text)
    return found[-1].replace('\\"', '"') if found else text.strip()


def archive_digest(path: Path) -> str:
    """The manifest digest of the image in an OCI archive."""
    res = _skopeo(["inspect", f"oci-archive:{path}"], 120)
    try:
        return json.loads(res.stdout)["Digest"]
    except (ValueError, KeyError):
        raise BundleError(f"{path}: not an OCI archive ({res.stderr.strip()})") from None


def image_present(i: ImageArtifact, bundle: Path, index: dict[str, Any]) -> bool:
    entry = index["images"].get(i.ref)
    path = bundle / image_path(i)
    if not entry or not path.is_file() or entry.get("sha256") != sha256_of(path):
        return False
    return entry.get("pinned") == i.digest


def fetch_image(i: ImageArtifact, bundle: Path, timeout: float = 1800) -> dict[str, Any]:
    """Copy the image (linux/amd64) into an OCI archive; its index entry."""
    dest = bundle / image_path(i)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    part.unlink(missing_ok=True)  # an archive cannot be resumed: start it again
    source = f"docker://{i.ref.rsplit(':', 1)[0]}@{i.digest}" if i.digest else f"docker://{i.ref}"
    # --retry-times: skopeo retries a failed pull of a blob or manifest (skopeo-copy(1)).
    args = ["copy", "--quiet", "--retry-times", "3"]
    args += ["--override-os", "linux", "--override-arch", "amd64"]
    if _loopback(i.host):
        args.append("--src-tls-verify=false")
    res = _skopeo([*args, source, f"oci-archive:{part}"], timeout)
    if res.returncode != 0:
        part.unlink(missing_ok=True)
        raise BundleError(f"cannot copy {i.ref}: {skopeo_message(res.stderr or res.stdout)}")
    digest = archive_digest(part)
    os.replace(part, dest)
    # skopeo fetched a pinned image by its digest (the registry and skopeo verify it); the
    # archive may hold it re-encoded as OCI, so its own digest is recorded beside the pin
    return {
        "path": image_path(i),
        "digest": digest,
        "pinned": i.digest,
        "sha256": sha256_of(dest),
        "size": dest.stat().st_size,
    }


def fetch(
    arts: Artifacts, bundle: Path, say: Callable[[str], None] = lambda _m: None
) -> dict[str, int]:
    """Make every artifact present in the bundle; counts of fetched, present and failed.

    Every artifact is tried; failures are collected and raised together at the end, after the
    index records all that did arrive (a re-run then fetches only what is still missing)."""
    bundle = Path(bundle)
    bundle.mkdir(parents=True, exist_ok=True)
    if arts.images and not shutil.which("skopeo"):
        raise BundleError("fetching images needs skopeo on this machine: apt-get install skopeo")
    with open(bundle / ".lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            say(f"waiting for another fetch into {bundle} to finish …")
            fcntl.flock(lock, fcntl.LOCK_EX)
        return _fetch_locked(arts, bundle, say)


def _fetch_locked(arts: Artifacts, bundle: Path, say: Callable[[str], None]) -> dict[str, int]:
    index = read_index(bundle)
    counts = {"fetched": 0, "present": 0, "failed": 0}
    problems: list[str] = []
    total = len(arts.files) + len(arts.images)
    for n, f in enumerate(arts.files, 1):
        try:
            got = fetch_file(f, bundle)
        except BundleError as exc:
            problems.append(str(exc))
            counts["failed"] += 1
            continue
        counts["fetched" if got else "present"] += 1
        say(f"[{n}/{total}] {'fetched' if got else 'present'} {f.url}")
        index["files"][f.url] = {
            "sha256": f.sha256,
            "path": file_path(f),
            "size": (bundle / file_path(f)).stat().st_size,
        }
        write_index(bundle, index)
    for n, i in enumerate(arts.images, len(arts.files) + 1):
        if image_present(i, bundle, index):
            counts["present"] += 1
            say(f"[{n}/{total}] present {i.ref}")
            continue
        say(f"[{n}/{total}] copying {i.ref} …")
        try:
            index["images"][i.ref] = fetch_image(i, bundle)
        except BundleError as exc:
            problems.append(str(exc))
            counts["failed"] += 1
            continue
        counts["fetched"] += 1
        write_index(bundle, index)
    if problems:
        raise BundleError(
            f"{len(problems)} of {total} artifacts could not be fetched "
            f"(the others are in {bundle}; run again to retry):\n  " + "\n  ".join(problems)
        )
    return counts


def _on_disk(bundle: Path, entry: dict[str, Any] | None) -> bool:
    """The entry's file exists with the size the index recorded (when it recorded one)."""
    if not entry:
        return False
    path = bundle / entry["path"]
    return path.is_file() and entry.get("size", path.stat().st_size) == path.stat().st_size


def missing(arts: Artifacts, bundle: Path) -> list[str]:
    """What the bundle lacks of `arts` (by its index and the files on disk), one line each.

    Cheap enough for every `up`: presence and size; the bytes are checked where they are used
    (the download role's sha256, skopeo and the registry's digests)."""
    bundle = Path(bundle)
    if not (bundle / INDEX).is_file():
        return [
            f"{bundle} is not a bundle (no {INDEX}); make one with `{progname.cmd('artifacts fetch')}`"
        ]
    index = read_index(bundle)
    out = []
    for f in arts.files:
        entry = index["files"].get(f.url)
        if not _on_disk(bundle, entry) or entry.get("sha256") != f.sha256:
            out.append(f"file {f.url} (sha256 {f.sha256})")
    for i in arts.images:
        entry = index["images"].get(i.ref)
        if not _on_disk(bundle, entry) or entry.get("pinned") != i.digest:
            out.append(f"image {i.ref}")
    return out
