"""Test-side helpers: the bridge's wire format written independently of thinkcells_bridge
(as the TypeScript client does it), and tiny random models."""

from __future__ import annotations

import json
import socket
import struct

import numpy as np
import torch

WIRE_DTYPES = {np.dtype(np.int32): "int32", np.dtype(np.int64): "int64", np.dtype(np.float32): "float32"}
NP_DTYPES = {name: dtype for dtype, name in WIRE_DTYPES.items()}


class Tensor:
    """Marks a numpy array in a request body; `build_frame` turns it into a TensorRef."""

    def __init__(self, array):
        self.array = np.ascontiguousarray(array)


def build_frame(request_id, op, body, extra_envelope=None):
    """u32 frame length, u32 JSON length, JSON envelope {id, op, body, buffers}, then the binary
    section with every array starting at an 8-byte aligned offset."""
    chunks, buffers = [], []
    offset = 0

    def walk(value):
        nonlocal offset
        if isinstance(value, Tensor):
            data = value.array.tobytes()
            pad = (-offset) % 8
            chunks.append(b"\0" * pad + data)
            offset += pad
            buffers.append([offset, len(data)])
            offset += len(data)
            return {
                "$tensor": len(buffers) - 1,
                "dtype": WIRE_DTYPES[value.array.dtype],
                "shape": list(value.array.shape),
            }
        if isinstance(value, dict):
            return {k: walk(v) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v) for v in value]
        return value

    envelope = {"id": request_id, "op": op, "body": walk(body), "buffers": buffers}
    envelope.update(extra_envelope or {})
    head = json.dumps(envelope).encode("utf-8")
    blob = b"".join(chunks)
    return struct.pack("<II", 4 + len(head) + len(blob), len(head)) + head + blob


def raw_frame(envelope, blob=b""):
    head = json.dumps(envelope).encode("utf-8")
    return struct.pack("<II", 4 + len(head) + len(blob), len(head)) + head + blob


def parse_frame(frame):
    """A whole frame (with its length field) → envelope with TensorRefs replaced by numpy arrays."""
    (length,) = struct.unpack_from("<I", frame, 0)
    assert length == len(frame) - 4
    (json_len,) = struct.unpack_from("<I", frame, 4)
    envelope = json.loads(frame[8 : 8 + json_len].decode("utf-8"))
    blob = frame[8 + json_len :]

    def walk(value):
        if isinstance(value, dict):
            if "$tensor" in value:
                offset, nbytes = envelope["buffers"][value["$tensor"]]
                assert offset % 8 == 0, f"buffer offset {offset} is not 8-byte aligned"
                array = np.frombuffer(blob[offset : offset + nbytes], dtype=NP_DTYPES[value["dtype"]])
                return array.reshape(value["shape"]).copy()
            return {k: walk(v) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v) for v in value]
        return value

    if "body" in envelope:
        envelope["body"] = walk(envelope["body"])
    return envelope


class Client:
    """A raw Unix-socket client for the bridge."""

    def __init__(self, path, timeout=30.0):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(str(path))
        self.next_id = 1

    def send(self, op, body, request_id=None):
        if request_id is None:
            request_id, self.next_id = self.next_id, self.next_id + 1
        self.sock.sendall(build_frame(request_id, op, body))
        return request_id

    def _recv_exact(self, n):
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                return None
            data += chunk
        return data

    def recv(self):
        """The next response envelope, or None when the server closed the connection."""
        head = self._recv_exact(4)
        if head is None:
            return None
        (length,) = struct.unpack("<I", head)
        rest = self._recv_exact(length)
        assert rest is not None, "connection closed mid-frame"
        return parse_frame(head + rest)

    def call(self, op, body):
        request_id = self.send(op, body)
        response = self.recv()
        assert response is not None, f"connection closed while waiting for {op}"
        assert response["id"] == request_id
        return response

    def close(self):
        self.sock.close()


# -- tiny random models ------------------------------------------------------------------------


def llama_config(**overrides):
    config = {
        "model_type": "llama",
        "vocab_size": 97,
        "hidden_size": 32,
        "intermediate_size": 48,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 64,
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "tie_word_embeddings": True,
        "bos_token_id": 1,
        "eos_token_id": 2,
    }
    config.update(overrides)
    return config


def qwen2_config(**overrides):
    config = llama_config(
        model_type="qwen2", tie_word_embeddings=False, rope_theta=1000000.0, rms_norm_eps=1e-6, eos_token_id=[2, 3]
    )
    config.update(overrides)
    return config


def random_model(hf_config, seed=0):
    """A CausalLM with every parameter random (norm weights and biases too), in eval mode."""
    from thinkcells_bridge.model import CausalLM, ModelConfig

    torch.manual_seed(seed)
    model = CausalLM(ModelConfig.from_hf(hf_config))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1.0 + 0.3 * torch.randn(p.shape, generator=g))
            elif name.endswith("bias"):
                p.copy_(0.2 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(torch.randn(p.shape, generator=g) / p.shape[-1] ** 0.5 * (2.0 if "embed" in name else 1.0))
    return model.eval()


def perturb_adapters(m, seed=1):
    """Non-zero LoRA B matrices (fresh adapters start at B = 0, the base model)."""
    from thinkcells_bridge.lora import LoRALinear

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in m.modules():
            if isinstance(layer, LoRALinear):
                layer.lora_B.copy_(torch.randn(layer.lora_B.shape, generator=g) * 0.1)
