"""Serve an artifact bundle to a lab from the controller: files over HTTP, images from a registry.

A bundle (made by `inv artifacts fetch`) is a directory:

    index.json                         {"format": 1, "files": {...}, "images": {...}}
    files/<host>/<path>                the file of upstream https://<host>/<path>
    images/<host>/<repo>/<tag>.tar     an oci-archive of the image <host>/<repo>:<tag>

`start` serves it on the controller's address on the lab network, bound to that address only:
files/ by a small file server of this module (the download role's mirror layout,
<mirror>/HOST/PATH: regular files inside the bundle only, no listing, no `..`, no symlink
leading out), the images by a real registry (Debian's `docker-registry`, CNCF distribution
2.8) whose storage lives in the lab's state dir, read-only for the nodes (storage.maintenance.
readonly: pushes are refused). Images are loaded by a second, writable registry bound to
127.0.0.1 only while skopeo copies them. Both servers run as `nobody` when what they serve is
readable by others (else as the bundle's owner; as root only when the bundle is root's
alone). Each image is loaded with skopeo under its upstream host, so
docker.io/library/busybox and quay.io/x/busybox stay apart:
<address>:<port>/<upstream host>/<repo>:<tag>. The nodes' containerd reaches it through one
hosts.toml per upstream host (path /v2/<upstream host>, override_path). `stop` ends both;
every provider's destroy calls it, so `down` leaves nothing running.

Both servers are found by their command lines (an argument under <state>/serve/), so they
are stopped even when their pidfiles are gone.
"""

from __future__ import annotations

import argparse
import contextlib
import http.server
import json
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from clusterlab import artifacts, paths, procs, progname, ui
from clusterlab import bundle as bundle_mod
from clusterlab.bundle import INDEX, BundleError

FILES_PORT = 8090
REGISTRY_PORT = 5005
START_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0
KINDS = ("files", "registry")

# Where an upstream registry's API answers when that is not its name.
UPSTREAM_ENDPOINTS = {"docker.io": "https://registry-1.docker.io"}

MANIFEST_TYPES = ", ".join(
    (
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    )
)


class ServeError(BundleError):
    """A bundle cannot be served; the message says why and what to do."""


# ------------------------------------------------------------------ the bundle
def read_index(bundle: Path) -> dict:
    """The index of an existing bundle (bundle.read_index), its entries checked for a path."""
    path = Path(bundle).expanduser() / INDEX
    if not path.is_file():
        raise ServeError(
            f"{bundle} is not an artifact bundle: no {INDEX} (make one with "
            f"`{progname.cmd('artifacts fetch --lab LAB --out ' + str(bundle))}`)"
        )
    data = bundle_mod.read_index(path.parent)
    for key in ("files", "images"):
        section = data[key]
        if not isinstance(section, dict) or not all(
            isinstance(v, dict) and isinstance(v.get("path"), str) for v in section.values()
        ):
            raise ServeError(f"{path}: {key} must map each entry to an object with a path")
    return data


def split_ref(ref: str) -> tuple[str, str, str]:
    """registry.k8s.io/pause:3.10.1 -> (registry.k8s.io, pause, 3.10.1); full references only."""
    name = ref.split("@", 1)[0]
    host, _, rest = name.partition("/")
    repo, sep, tag = rest.rpartition(":")
    if not rest or not sep or "/" in tag or not repo:
        raise ServeError(f"image {ref!r}: not a full reference like registry.k8s.io/pause:3.10.1")
    return host, repo, tag


def lab_image_hosts(s: dict) -> set[str]:
    """The upstream registries of the images the lab needs (whether or not the bundle holds
    them yet: adding them to the bundle later needs no new mirror configuration)."""
    return {i.host for i in artifacts.lab_artifacts(s).images}


def image_hosts(index: dict) -> list[str]:
    """The upstream registries of the bundle's images, sorted."""
    return sorted({split_ref(ref)[0] for ref in index["images"]})


# ------------------------------------------------------------------ addresses
def serve_address(s: dict) -> str:
    """The controller's address on the lab network: where the nodes reach the servers.

    local: the lab bridge's address (the gateway). vagrant: the same address, which both
    vagrant-libvirt and VirtualBox give the host on a private network (its first address).
    static: the source address this machine uses towards the first node.
    """
    if s["provider"] in ("local", "vagrant"):
        return s["network"]["gateway"]
    target = s["nodes"][0]["address"]
    proc = subprocess.run(
        ["ip", "-j", "-4", "route", "get", target], capture_output=True, text=True, check=False
    )
    try:
        routes = json.loads(proc.stdout or "[]")
        return next(r["prefsrc"] for r in routes if r.get("prefsrc"))
    except (ValueError, StopIteration):
        raise ServeError(
            f"no route from this machine to node {s['nodes'][0]['name']} ({target}): "
            f"{proc.stderr.strip() or 'ip route get gave no source address'}"
        ) from None


def mirror_vars(s: dict) -> dict:
    """Inventory variables of a lab served from its bundle (artifacts.bundle):

    artifacts_mirror_url: the files server (the download role fetches <mirror>/HOST/PATH);
    artifacts_registry_mirrors: upstream registry host -> its mirror endpoint, one per
    upstream host of the bundle's images (container_runtime writes a hosts.toml for each).
    """
    index = read_index(Path(s["artifacts"]["bundle"]))
    addr = serve_address(s)
    return {
        "artifacts_mirror_url": f"http://{addr}:{FILES_PORT}",
        "artifacts_registry_mirrors": {
            host: f"http://{addr}:{REGISTRY_PORT}/v2/{host}"
            for host in sorted({*image_hosts(index), *lab_image_hosts(s)})
        },
    }


# ------------------------------------------------------------------ processes
def serve_dir(s: dict) -> Path:
    return paths.state_dir(s["name"]) / "serve"


def _markers(sdir: Path) -> dict[str, str]:
    """kind -> the argument that only this lab's server of that kind carries (the loader:
    the writable registry on 127.0.0.1 that exists while images are loaded)."""
    return {
        "files": str(sdir / "files"),
        "registry": str(sdir / "registry.yml"),
        "loader": str(sdir / "loader.yml"),
    }


def _kind_of(argv: list[str], sdir: Path) -> str | None:
    for kind, marker in _markers(sdir).items():
        if marker in argv:
            return kind
    return None


def processes(state: Path) -> dict[int, str]:
    """pid -> kind (files | registry) of every serving process of the lab whose state dir
    is `state`, found by its command line."""
    sdir = state / "serve"
    found = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid():
            kind = _kind_of(procs.cmdline(int(entry)), sdir)
            if kind:
                found[int(entry)] = kind
    return found


def _pid(sdir: Path, kind: str) -> int | None:
    """The pid in kind's pidfile when that process is still this lab's server of that kind."""
    try:
        pid = int((sdir / f"{kind}.pid").read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if _kind_of(procs.cmdline(pid), sdir) == kind else None


def stop(s: dict) -> None:
    """Stop the lab's file server and registry (safe when nothing runs); remove pidfiles."""
    stop_in(paths.state_dir(s["name"]))


def stop_in(state: Path) -> None:
    """stop() for the lab whose state dir is `state` (what a provider's destroy knows)."""
    sdir = state / "serve"
    pids = processes(state)
    for kind in KINDS:
        pid = _pid(sdir, kind)
        if pid:
            pids[pid] = kind
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT
    while (left := [p for p in pids if procs.alive(p)]) and time.monotonic() < deadline:
        time.sleep(0.1)
    for pid in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    for proc in [p for p in _STARTED if p.pid in pids]:  # reap what this process started
        proc.wait()
        _STARTED.remove(proc)
    for name in (*(f"{k}.pid" for k in KINDS), "serving.json"):
        (sdir / name).unlink(missing_ok=True)
    if pids:
        ui.info(f"    stopped serving the bundle ({', '.join(sorted(set(pids.values())))})")


# ------------------------------------------------------------------ start
def _registry_config(sdir: Path, addr: str, port: int, *, readonly: bool) -> str:
    """distribution's configuration, as JSON (YAML's subset: no value is pasted as text).
    readonly: storage.maintenance.readonly, which refuses every push and delete (405)."""
    config = {
        "version": 0.1,
        "log": {"level": "info"},
        "storage": {
            "filesystem": {"rootdirectory": str(sdir / "registry")},
            "cache": {"blobdescriptor": "inmemory"},
            "delete": {"enabled": False},
            "maintenance": {
                "readonly": {"enabled": readonly},
                "uploadpurging": {"enabled": False},
            },
        },
        "http": {"addr": f"{addr}:{port}"},
    }
    what = "read-only for clients" if readonly else "writable, on 127.0.0.1, while loading"
    return f"# Written by clusterlab: the lab's image mirror (CNCF distribution), {what}.\n" + (
        json.dumps(config, indent=2) + "\n"
    )


# ------------------------------------------------------------------ privileges
def _readable_by_others(path: Path) -> bool:
    """Whether `nobody` can read everything under the directory `path`: every directory on
    the way there searchable by others, and inside it every directory readable and
    searchable, every file readable by others."""
    real = Path(os.path.realpath(path))
    try:
        for d in real.parents:
            if not os.stat(d).st_mode & stat.S_IXOTH:
                return False
        for top, _, files in os.walk(real, onerror=_raise):
            if os.stat(top).st_mode & (stat.S_IROTH | stat.S_IXOTH) != stat.S_IROTH | stat.S_IXOTH:
                return False
            for name in files:  # symlinks: served only where their targets are, checked there
                st = os.lstat(os.path.join(top, name))
                if not stat.S_ISLNK(st.st_mode) and not st.st_mode & stat.S_IROTH:
                    return False
    except OSError:
        return False
    return True


def _raise(exc: OSError) -> None:
    raise exc


def run_as(path: Path) -> tuple[list[str], str]:
    """(argv prefix, who) to run a server of `path` with no more privilege than it needs:
    `nobody` when others can read it, else its owner when that is not root; as root only
    when the content is root's alone (who then says why)."""
    if os.geteuid() != 0:
        return [], pwd.getpwuid(os.geteuid()).pw_name
    setpriv = shutil.which("setpriv")
    if not setpriv:
        return [], "root (no setpriv to drop privileges: install util-linux)"
    real = Path(os.path.realpath(path))
    if _readable_by_others(real):
        user = pwd.getpwnam("nobody")
    else:
        st = os.stat(real)
        if st.st_uid == 0:
            return [], f"root ({real} is readable by root only: make it o+rX to serve as nobody)"
        user = pwd.getpwuid(st.st_uid)
    return [
        setpriv,
        f"--reuid={user.pw_uid}",
        f"--regid={user.pw_gid}",
        "--clear-groups",
        "--no-new-privs",
        "--",
    ], user.pw_name


# ------------------------------------------------------------------ the file server
class FilesHandler(http.server.BaseHTTPRequestHandler):
    """GET/HEAD of regular files under `root` (a real path); anything else is 404: the root
    and directories (no listing), `.`/`..`/empty segments, backslashes, NUL, and paths that
    resolve (through symlinks) outside the root."""

    root = "/nonexistent"
    server_version = "clusterlab-files"
    sys_version = ""

    def resolve(self) -> str | None:
        rel = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path, errors="strict")
        if not rel.startswith("/") or "\0" in rel or "\\" in rel:
            return None
        parts = rel[1:].split("/")
        if any(p in ("", ".", "..") for p in parts):
            return None
        full = os.path.realpath(os.path.join(self.root, *parts))
        return full if full.startswith(self.root + os.sep) else None

    def _send(self, body: bool) -> None:
        try:
            path = self.resolve()
        except UnicodeDecodeError:
            path = None
        fd = -1
        if path is not None:
            with contextlib.suppress(OSError):
                fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
        if fd < 0:
            self.send_error(404)
            return
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):  # a directory: no listing
            os.close(fd)
            self.send_error(404)
            return
        with os.fdopen(fd, "rb") as fh:
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(st.st_size))
            self.end_headers()
            if body:
                shutil.copyfileobj(fh, self.wfile, 2**20)

    def do_GET(self) -> None:
        self._send(body=True)

    def do_HEAD(self) -> None:
        self._send(body=False)


def serve_files(bind: str, port: int, root: Path) -> None:
    """Serve `root` until killed (what `python -m clusterlab.serve files` runs)."""
    FilesHandler.root = os.path.realpath(root)
    server = http.server.ThreadingHTTPServer((bind, port), FilesHandler)
    print(
        f"serving {FilesHandler.root} on {bind}:{port} as uid {os.geteuid()}",
        flush=True,
    )
    server.serve_forever()


def _check_port(addr: str, port: int, what: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((addr, port))
        except OSError as exc:
            if exc.errno == 98:  # EADDRINUSE
                raise ServeError(
                    f"cannot serve the {what} on {addr}:{port}: the port is taken by another "
                    f"program (see `ss -ltnp 'sport = :{port}'`)"
                ) from None
            raise ServeError(
                f"cannot serve the {what} on {addr}:{port}: {exc.strerror or exc} "
                "(is the lab's network up on this machine?)"
            ) from None


def _answers(url: str) -> int | None:
    """The HTTP status of GET url, or None when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:  # noqa: S310 (http only, ours)
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except (urllib.error.URLError, OSError):
        return None


def _log_tail(log: Path, lines: int = 8) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return ""


# The servers this process started: kept, so that Python does not warn about (or collect)
# a Popen whose detached process is meant to outlive it.
_STARTED: list[subprocess.Popen] = []


def _launch(sdir: Path, kind: str, argv: list[str]) -> int:
    log = sdir / f"{kind}.log"
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "ab") as out:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
        )
    _STARTED.append(proc)
    (sdir / f"{kind}.pid").write_text(f"{proc.pid}\n")
    return proc.pid


def _wait_until_up(sdir: Path, kind: str, pid: int, url: str, ok: set[int]) -> None:
    log = sdir / f"{kind}.log"
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if not procs.alive(pid):
            raise ServeError(
                f"the bundle's {kind} server exited at start (log: {log}):\n{_log_tail(log)}"
            )
        if _answers(url) in ok:
            return
        time.sleep(0.2)
    raise ServeError(
        f"the bundle's {kind} server does not answer {url} after {START_TIMEOUT:.0f} s "
        f"(log: {log}):\n{_log_tail(log)}"
    )


def _serving(s: dict) -> dict | None:
    """What runs now (bundle, address, ports) when both servers run, else None."""
    sdir = serve_dir(s)
    try:
        record = json.loads((sdir / "serving.json").read_text())
    except (OSError, ValueError):
        return None
    pids = [_pid(sdir, k) for k in KINDS]
    return record if all(p and procs.alive(p) for p in pids) else None


def start(s: dict, bundle: Path, only: set[str] | None = None) -> None:
    """Serve the bundle to the lab (idempotent): both servers running, the images loaded
    (those named in `only`, else every image of the bundle)."""
    bundle = Path(bundle).expanduser().resolve()
    index = read_index(bundle)
    missing = [t for t in ("docker-registry", "skopeo") if not shutil.which(t)]
    if missing:
        raise ServeError(
            f"serving a bundle needs {', '.join(missing)}; run as root: "
            "apt-get install -y docker-registry skopeo"
        )
    addr = serve_address(s)
    sdir = serve_dir(s)
    wanted = {
        "bundle": str(bundle),
        "address": addr,
        "files_port": FILES_PORT,
        "registry_port": REGISTRY_PORT,
    }
    if _serving(s) != wanted:
        stop(s)
        sdir.mkdir(parents=True, exist_ok=True)
        _check_port(addr, FILES_PORT, "bundle's files")
        _check_port(addr, REGISTRY_PORT, "bundle's image registry")
        files = sdir / "files"  # the file server's root: a link to the bundle's files/
        if files.is_symlink() or files.is_file():
            files.unlink()
        elif files.is_dir():
            shutil.rmtree(files)
        if (bundle / "files").is_dir():
            files.symlink_to(bundle / "files")
        else:
            files.mkdir()
        config = sdir / "registry.yml"
        config.write_text(_registry_config(sdir, addr, REGISTRY_PORT, readonly=True))
        (sdir / "registry").mkdir(mode=0o755, exist_ok=True)
        files_user, files_who = run_as(files)
        registry_user, registry_who = run_as(sdir / "registry")
        argv = [
            *files_user,
            sys.executable,
            "-m",
            "clusterlab.serve",
            "files",
            "--bind",
            addr,
            "--port",
            str(FILES_PORT),
            "--root",
            str(files),
        ]
        pids = {
            "files": _launch(sdir, "files", argv),
            "registry": _launch(
                sdir, "registry", [*registry_user, "docker-registry", "serve", str(config)]
            ),
        }
        try:
            # the file server lists nothing: its root answers 404
            _wait_until_up(sdir, "files", pids["files"], f"http://{addr}:{FILES_PORT}/", {404})
            _wait_until_up(
                sdir, "registry", pids["registry"], f"http://{addr}:{REGISTRY_PORT}/v2/", {200}
            )
        except ServeError:
            stop(s)
            raise
        (sdir / "serving.json").write_text(json.dumps(wanted, indent=2) + "\n")
        ui.info(
            f"    serving {bundle}: files http://{addr}:{FILES_PORT} (as {files_who}), "
            f"images {addr}:{REGISTRY_PORT} read-only (as {registry_who}; logs: {sdir}/*.log)"
        )
    load_images(s, bundle, index, only)


def _present(addr: str, host: str, repo: str, tag: str) -> str | None:
    """The digest the lab's registry holds for <host>/<repo>:<tag>, or None."""
    req = urllib.request.Request(
        f"http://{addr}:{REGISTRY_PORT}/v2/{host}/{repo}/manifests/{tag}",
        method="HEAD",
        headers={"Accept": MANIFEST_TYPES},
    )
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:  # noqa: S310
            return resp.headers.get("Docker-Content-Digest") or "present"
    except (urllib.error.URLError, OSError):
        return None


def load_images(s: dict, bundle: Path, index: dict, only: set[str] | None = None) -> None:
    """Copy every image of the bundle into the lab's registry that it does not hold yet.

    An image counts as loaded when the registry has its tag and it came from the same archive
    (path, size and modification time recorded in <state>/serve/loaded.json).
    """
    addr = serve_address(s)
    sdir = serve_dir(s)
    record_file = sdir / "loaded.json"
    try:
        loaded = json.loads(record_file.read_text())
    except (OSError, ValueError):
        loaded = {}
    refs = sorted(r for r in index["images"] if only is None or r in only)
    todo = []
    for ref in refs:
        archive = bundle / index["images"][ref]["path"]
        if not archive.is_file():
            raise ServeError(f"image {ref}: the bundle lacks its archive {archive}")
        st = archive.stat()
        ident = f"{archive}:{st.st_size}:{st.st_mtime_ns}"
        if loaded.get(ref) == ident and _present(addr, *split_ref(ref)):
            continue
        todo.append((ref, archive, ident))
    if not todo:
        if refs:
            ui.info(f"    registry holds all {len(refs)} images of the bundle")
        return
    start_all = time.monotonic()
    with _loader(sdir) as loader:
        for n, (ref, archive, ident) in enumerate(todo, 1):
            _load_one(loader, ref, archive)
            loaded[ref] = ident
            record_file.write_text(json.dumps(loaded, indent=2, sort_keys=True) + "\n")
            ui.info(f"    image {n}/{len(todo)} {ref} loaded")
    ui.info(f"    loaded {len(todo)} image(s) in {time.monotonic() - start_all:.1f} s")


@contextlib.contextmanager
def _loader(sdir: Path):
    """A writable registry on the lab's storage, bound to 127.0.0.1 on a free port, for as
    long as images are copied in: the nodes' registry stays read-only all along."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = sdir / "loader.yml"
    config.write_text(_registry_config(sdir, "127.0.0.1", port, readonly=False))
    pid = _launch(sdir, "loader", ["docker-registry", "serve", str(config)])
    try:
        _wait_until_up(sdir, "loader", pid, f"http://127.0.0.1:{port}/v2/", {200})
        yield f"127.0.0.1:{port}"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        for proc in [p for p in _STARTED if p.pid == pid]:
            try:
                proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            _STARTED.remove(proc)
        (sdir / "loader.pid").unlink(missing_ok=True)


def _load_one(loader: str, ref: str, archive: Path) -> None:
    host, repo, tag = split_ref(ref)
    target = f"docker://{loader}/{host}/{repo}:{tag}"
    size = archive.stat().st_size / 2**20
    began = time.monotonic()
    proc = subprocess.run(
        [
            "skopeo",
            "copy",
            "--quiet",
            "--dest-tls-verify=false",
            f"oci-archive:{archive}",
            target,
        ],
        capture_output=True,
        text=True,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-6:])
        raise ServeError(f"cannot load image {ref} from {archive} into the registry:\n{tail}")
    ui.info(f"    {ref}: {size:.1f} MiB copied in {time.monotonic() - began:.1f} s")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m clusterlab.serve")
    sub = parser.add_subparsers(dest="cmd", required=True)
    files = sub.add_parser("files", help="serve a bundle's files/ (regular files only)")
    files.add_argument("--bind", required=True)
    files.add_argument("--port", type=int, required=True)
    files.add_argument("--root", type=Path, required=True)
    args = parser.parse_args(argv)
    serve_files(args.bind, args.port, args.root)


if __name__ == "__main__":
    main()
