"""A minimal CRI client: what `crictl version` and `crictl info` ask, over gRPC.

crictl is not packaged for Debian and its release binaries cannot be downloaded here, so the
tests speak the Container Runtime Interface (k8s.io/cri-api, package runtime.v1) themselves.
Only the few protobuf messages needed are encoded by hand:

    VersionRequest  { string version = 1; }
    VersionResponse { string version = 1; string runtime_name = 2;
                      string runtime_version = 3; string runtime_api_version = 4; }
    StatusRequest   { bool verbose = 1; }
    StatusResponse  { RuntimeStatus status = 1; map<string, string> info = 2; }
    RuntimeStatus   { repeated RuntimeCondition conditions = 1; }
    RuntimeCondition { string type = 1; bool status = 2; string reason = 3; string message = 4; }
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import grpc

SERVICE = "/runtime.v1.RuntimeService/"
VARINT, LENGTH = 0, 2


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        b = buf[i]
        i += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, i
        shift += 7


def fields(buf: bytes) -> Iterator[tuple[int, int | bytes]]:
    """(field number, value) of a protobuf message: ints for varints, bytes for the rest."""
    i = 0
    while i < len(buf):
        tag, i = _varint(buf, i)
        number, wire = tag >> 3, tag & 7
        if wire == VARINT:
            value, i = _varint(buf, i)
            yield number, value
        elif wire == LENGTH:
            size, i = _varint(buf, i)
            yield number, buf[i : i + size]
            i += size
        else:
            raise ValueError(f"unexpected wire type {wire} for field {number}")


def _call(socket: str, method: str, request: bytes, timeout: float) -> bytes:
    with grpc.insecure_channel(f"unix://{socket}") as channel:
        call = channel.unary_unary(
            SERVICE + method, request_serializer=None, response_deserializer=None
        )
        return call(request, timeout=timeout)


def version(socket: str, timeout: float = 10) -> dict[str, str]:
    names = {1: "version", 2: "runtime_name", 3: "runtime_version", 4: "runtime_api_version"}
    reply = _call(socket, "Version", b"", timeout)
    return {names[n]: v.decode() for n, v in fields(reply) if n in names}


def info(socket: str, timeout: float = 10) -> dict:
    """`crictl info`: {"conditions": {type: status}, "config": …} (JSON values decoded)."""
    reply = _call(socket, "Status", b"\x08\x01", timeout)  # verbose = true
    out: dict = {"conditions": {}}
    for number, value in fields(reply):
        if number == 1:
            for _, cond in fields(value):
                c = dict(fields(cond))
                out["conditions"][c.get(1, b"").decode()] = bool(c.get(2, 0))
        elif number == 2:
            entry = dict(fields(value))
            text = entry.get(2, b"").decode()
            try:
                out[entry.get(1, b"").decode()] = json.loads(text)
            except ValueError:  # a plain message (as crictl shows it)
                out[entry.get(1, b"").decode()] = text
    return out


IMAGES = "/runtime.v1.ImageService/"


def _string(number: int, text: str) -> bytes:
    """One length-delimited protobuf field holding `text` (short strings only: < 128 bytes)."""
    data = text.encode()
    assert len(data) < 0x80
    return bytes([number << 3 | LENGTH, len(data)]) + data


def _image_call(socket: str, method: str, image: str, timeout: float) -> bytes:
    spec = _string(1, image)  # ImageSpec { string image = 1; }
    request = bytes([1 << 3 | LENGTH, len(spec)]) + spec  # {Pull,Remove}ImageRequest.image = 1
    with grpc.insecure_channel(f"unix://{socket}") as channel:
        call = channel.unary_unary(
            IMAGES + method, request_serializer=None, response_deserializer=None
        )
        return call(request, timeout=timeout)


def pull_image(socket: str, image: str, timeout: float = 120) -> str:
    """`crictl pull IMAGE` (the kubelet's path: the CRI plugin with its registry hosts config);
    returns the image id. Raises grpc.RpcError when the pull fails."""
    reply = _image_call(socket, "PullImage", image, timeout)  # PullImageResponse.image_ref = 1
    return next((v.decode() for n, v in fields(reply) if n == 1), "")


def remove_image(socket: str, image: str, timeout: float = 30) -> None:
    """`crictl rmi IMAGE` (no error when it is not there)."""
    _image_call(socket, "RemoveImage", image, timeout)


# --- pod sandboxes: what the kubelet asks before any container of a pod runs -------------
#
#   RunPodSandboxRequest   { PodSandboxConfig config = 1; string runtime_handler = 2; }
#   PodSandboxConfig       { PodSandboxMetadata metadata = 1; string hostname = 2;
#                            map<string, string> labels = 6; LinuxPodSandboxConfig linux = 8; }
#   PodSandboxMetadata     { string name = 1; string uid = 2; string namespace = 3;
#                            uint32 attempt = 4; }
#   LinuxPodSandboxConfig  { string cgroup_parent = 1; … }
#   RunPodSandboxResponse  { string pod_sandbox_id = 1; }
#   PodSandboxStatusRequest  { string pod_sandbox_id = 1; bool verbose = 2; }
#   PodSandboxStatusResponse { PodSandboxStatus status = 1; map<string, string> info = 2; }
#   PodSandboxStatus       { string id = 1; PodSandboxMetadata metadata = 2;
#                            PodSandboxState state = 3; int64 created_at = 4;
#                            PodSandboxNetworkStatus network = 5; … }
#   PodSandboxNetworkStatus { string ip = 1; … }
#   PodSandboxState        { SANDBOX_READY = 0; SANDBOX_NOTREADY = 1; }
#   {Stop,Remove}PodSandboxRequest { string pod_sandbox_id = 1; }
# (k8s.io/cri-api, pkg/apis/runtime/v1/api.proto)


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        low, value = value & 0x7F, value >> 7
        out.append(low | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _field(number: int, payload: bytes | str) -> bytes:
    """A length-delimited field (string, bytes or embedded message) of any size."""
    data = payload.encode() if isinstance(payload, str) else payload
    return _encode_varint(number << 3 | LENGTH) + _encode_varint(len(data)) + data


def _map(number: int, entries: dict[str, str]) -> bytes:
    return b"".join(_field(number, _field(1, k) + _field(2, v)) for k, v in entries.items())


def run_pod_sandbox(
    socket: str,
    name: str,
    *,
    uid: str,
    namespace: str,
    cgroup_parent: str,
    labels: dict[str, str] | None = None,
    timeout: float = 120,
) -> str:
    """`crictl runp`: the sandbox id. Raises grpc.RpcError when the runtime refuses."""
    metadata = _field(1, name) + _field(2, uid) + _field(3, namespace)
    config = (
        _field(1, metadata)
        + _field(2, name)
        + _map(6, labels or {})
        + _field(8, _field(1, cgroup_parent))
    )
    reply = _call(socket, "RunPodSandbox", _field(1, config), timeout)
    return next((v.decode() for n, v in fields(reply) if n == 1), "")


def pod_sandbox_status(socket: str, sandbox_id: str, timeout: float = 30) -> dict:
    """`crictl inspectp`: {"id", "state" (READY/NOTREADY), "ip", "info": {…}} (info decoded
    from the runtime's verbose JSON, e.g. containerd's "pid" and "runtimeSpec")."""
    reply = _call(socket, "PodSandboxStatus", _field(1, sandbox_id) + b"\x10\x01", timeout)
    out: dict = {"id": "", "state": "READY", "ip": "", "info": {}}
    for number, value in fields(reply):
        if number == 1:
            for n, v in fields(value):
                if n == 1:
                    out["id"] = v.decode()
                elif n == 3:
                    out["state"] = {0: "READY", 1: "NOTREADY"}.get(v, str(v))
                elif n == 5:
                    out["ip"] = next((x.decode() for k, x in fields(v) if k == 1), "")
        elif number == 2:
            entry = dict(fields(value))
            text = entry.get(2, b"").decode()
            try:
                out["info"][entry.get(1, b"").decode()] = json.loads(text)
            except ValueError:
                out["info"][entry.get(1, b"").decode()] = text
    return out


def stop_pod_sandbox(socket: str, sandbox_id: str, timeout: float = 60) -> None:
    """`crictl stopp`: the sandbox's processes stop and its network is torn down (CNI DEL)."""
    _call(socket, "StopPodSandbox", _field(1, sandbox_id), timeout)


def remove_pod_sandbox(socket: str, sandbox_id: str, timeout: float = 60) -> None:
    """`crictl rmp` (no error when it is gone)."""
    _call(socket, "RemovePodSandbox", _field(1, sandbox_id), timeout)
