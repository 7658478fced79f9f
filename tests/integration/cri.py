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
