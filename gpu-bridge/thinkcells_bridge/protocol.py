"""Frames and validation for the bridge protocol.

The protocol is declared in TypeScript (cells-lib/bridge/protocol.ts); this side validates
every request against the JSON Schema generated from that declaration (protocol.schema.json),
so the two can never silently disagree. Frame layout: see protocol.ts.
"""

from __future__ import annotations

import json
import math
import struct

import jsonschema
import numpy as np
import torch

from .environment import protocol_schema

_SCHEMA = protocol_schema()
PROTOCOL_VERSION: int = _SCHEMA["protocol_version"]

_Validator = jsonschema.Draft202012Validator
_ENVELOPE = _Validator(_SCHEMA["envelope"])
_REQUESTS = {op: _Validator(schema) for op, schema in _SCHEMA["requests"].items()}

_NP = {"int32": np.int32, "int64": np.int64, "float32": np.float32}
_TORCH_NAMES = {torch.int32: "int32", torch.int64: "int64", torch.float32: "float32"}
MAX_FRAME = 1 << 31


class ProtocolError(ValueError):
    pass


def _describe(error: jsonschema.ValidationError) -> str:
    where = ".".join(str(p) for p in error.absolute_path) or "(body)"
    return f"{where}: {error.message}"


def validate_request(envelope: dict) -> None:
    errors = sorted(_ENVELOPE.iter_errors(envelope), key=lambda e: list(e.absolute_path))
    if errors:
        raise ProtocolError("invalid request envelope: " + "; ".join(_describe(e) for e in errors))
    op = envelope["op"]
    errors = sorted(_REQUESTS[op].iter_errors(envelope["body"]), key=lambda e: list(e.absolute_path))
    if errors:
        raise ProtocolError(f"invalid '{op}' request: " + "; ".join(_describe(e) for e in errors))


def decode_frame(payload: bytes) -> dict:
    """payload: a frame without its leading length field. Returns the envelope with TensorRefs
    in the body replaced by torch tensors (copies, independent of the frame's buffer)."""
    if len(payload) < 4:
        raise ProtocolError("frame too short")
    (json_len,) = struct.unpack_from("<I", payload, 0)
    if 4 + json_len > len(payload):
        raise ProtocolError("frame JSON length exceeds the frame")
    envelope = json.loads(payload[4 : 4 + json_len].decode("utf-8"))
    validate_request(envelope)
    blob = memoryview(payload)[4 + json_len :]
    envelope["body"] = _hydrate(envelope["body"], envelope["buffers"], blob)
    return envelope


def _hydrate(value, buffers, blob):
    if isinstance(value, dict):
        if "$tensor" in value:
            index = value["$tensor"]
            if index >= len(buffers):
                raise ProtocolError(f"tensor reference {index} has no buffer")
            offset, nbytes = buffers[index]
            if offset + nbytes > len(blob):
                raise ProtocolError(f"tensor {index} lies outside the frame")
            dtype = _NP[value["dtype"]]
            count = int(np.prod(value["shape"], dtype=np.int64))
            if count * np.dtype(dtype).itemsize != nbytes:
                raise ProtocolError(f"tensor {index}: shape {value['shape']} does not match {nbytes} bytes")
            array = np.frombuffer(blob[offset : offset + nbytes], dtype=dtype).reshape(value["shape"])
            return torch.from_numpy(array.copy())
        return {k: _hydrate(v, buffers, blob) for k, v in value.items()}
    if isinstance(value, list):
        return [_hydrate(v, buffers, blob) for v in value]
    return value


def encode_frame(envelope: dict) -> bytes:
    """Serializes a response envelope; torch tensors in the body become TensorRefs."""
    chunks: list[bytes] = []
    buffers: list[list[int]] = []
    offset = 0

    def dehydrate(value):
        nonlocal offset
        if isinstance(value, torch.Tensor):
            tensor = value.detach().to("cpu").contiguous()
            if tensor.dtype not in _TORCH_NAMES:
                tensor = tensor.float() if tensor.is_floating_point() else tensor.to(torch.int64)
            data = tensor.numpy().tobytes()
            pad = (-offset) % 8
            chunks.append(b"\0" * pad + data)
            offset += pad
            buffers.append([offset, len(data)])
            offset += len(data)
            return {"$tensor": len(buffers) - 1, "dtype": _TORCH_NAMES[tensor.dtype], "shape": list(tensor.shape)}
        if isinstance(value, dict):
            return {k: dehydrate(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [dehydrate(v) for v in value]
        if isinstance(value, float) and not math.isfinite(value):
            return None  # JSON has no NaN or infinity; the protocol marks such numbers nullable
        return value

    envelope = dict(envelope)
    if "body" in envelope:
        envelope["body"] = dehydrate(envelope["body"])
        envelope["buffers"] = buffers
    head = json.dumps(envelope, separators=(",", ":"), allow_nan=False).encode("utf-8")
    blob = b"".join(chunks)
    return struct.pack("<II", 4 + len(head) + len(blob), len(head)) + head + blob
