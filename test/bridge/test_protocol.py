import json
import struct

import numpy as np
import pytest
import torch
from bridge_wire import Tensor, build_frame, parse_frame, raw_frame
from thinkcells_bridge.protocol import PROTOCOL_VERSION, ProtocolError, decode_frame, encode_frame, validate_request


def sample_body(**overrides):
    body = {
        "model": "tiny",
        "prompt_ids": Tensor(np.array([5, 6, 7, 8, 9], dtype=np.int32)),
        "prompt_lengths": Tensor(np.array([2, 3], dtype=np.int32)),
        "n": 2,
        "max_new_tokens": 4,
        "temperature": 0.8,
        "top_p": 0.95,
        "top_k": 0,
        "stop_token_ids": [2],
        "seed": None,
        "use_cache": True,
        "entropy": False,
    }
    body.update(overrides)
    return body


def decode(frame):
    (length,) = struct.unpack_from("<I", frame)
    assert length == len(frame) - 4
    return decode_frame(frame[4:])


def test_hand_built_frame_decodes():
    floats = np.array([[0.5, -1.25, 3.0], [1e-8, -0.0, 7.5]], dtype=np.float32)
    frame = build_frame(7, "sample", sample_body(prompt_lengths=Tensor(floats)))
    envelope = decode(frame)
    assert envelope["id"] == 7 and envelope["op"] == "sample"
    ids, lengths = envelope["body"]["prompt_ids"], envelope["body"]["prompt_lengths"]
    assert ids.dtype == torch.int32 and ids.tolist() == [5, 6, 7, 8, 9]
    assert lengths.dtype == torch.float32 and lengths.shape == (2, 3)
    assert np.array_equal(lengths.numpy(), floats)
    assert envelope["body"]["stop_token_ids"] == [2] and envelope["body"]["seed"] is None


def test_decoded_tensors_are_copies():
    payload = bytearray(
        build_frame(
            1,
            "logprobs",
            {
                "model": "m",
                "token_ids": Tensor(np.arange(4, dtype=np.int64)),
                "lengths": Tensor(np.array([4], np.int64)),
                "temperature": 1.0,
            },
        )[4:]
    )
    envelope = decode_frame(payload)
    payload[-40:] = b"\xff" * 40  # overwrite the binary section
    assert envelope["body"]["token_ids"].dtype == torch.int64
    assert envelope["body"]["token_ids"].tolist() == [0, 1, 2, 3]
    envelope["body"]["lengths"][0] = 9  # writable, and independent of the frame


def test_encode_decode_round_trip():
    prompt_ids = torch.tensor([3, 1, 4, 1, 5, 9, 2, 6], dtype=torch.int32)
    lengths = torch.tensor([5, 3], dtype=torch.int32)
    body = sample_body(prompt_ids=prompt_ids, prompt_lengths=lengths, seed=-3)
    frame = encode_frame({"id": 12, "op": "sample", "body": body})
    envelope = decode(frame)
    assert envelope["id"] == 12 and envelope["op"] == "sample"
    assert envelope["body"]["prompt_ids"].dtype == torch.int32
    assert torch.equal(envelope["body"]["prompt_ids"], prompt_ids)
    assert torch.equal(envelope["body"]["prompt_lengths"], lengths)
    assert {k: v for k, v in envelope["body"].items() if not isinstance(v, torch.Tensor)} == {
        k: v for k, v in body.items() if not isinstance(v, torch.Tensor)
    }


def test_encoded_response_layout():
    odd = torch.tensor([1, 2, 3], dtype=torch.int32)  # 12 bytes: the next buffer must be realigned
    tokens = torch.arange(6, dtype=torch.int32).reshape(2, 3)
    logprobs = torch.tensor([[-0.5, -1.5]], dtype=torch.float64)  # widened types narrow to the wire's
    flags = torch.tensor([True, False])
    frame = encode_frame(
        {
            "id": 3,
            "ok": True,
            "body": {"a": odd, "nested": [{"t": tokens}], "lp": logprobs, "flags": flags, "reasons": ["length"]},
        }
    )
    (length, json_len) = struct.unpack_from("<II", frame)
    assert length == len(frame) - 4
    head = json.loads(frame[8 : 8 + json_len])
    assert head["ok"] is True and head["id"] == 3
    assert [offset % 8 for offset, _ in head["buffers"]] == [0, 0, 0, 0]
    assert head["buffers"] == [[0, 12], [16, 24], [40, 8], [48, 16]]
    assert len(frame) == 8 + json_len + 64
    assert head["body"]["a"] == {"$tensor": 0, "dtype": "int32", "shape": [3]}
    assert head["body"]["lp"]["dtype"] == "float32" and head["body"]["flags"]["dtype"] == "int64"
    parsed = parse_frame(frame)  # the test's own reader
    assert parsed["body"]["nested"][0]["t"].tolist() == tokens.tolist()
    assert parsed["body"]["lp"].dtype == np.float32 and parsed["body"]["lp"].tolist() == [[-0.5, -1.5]]
    assert parsed["body"]["flags"].tolist() == [1, 0] and parsed["body"]["reasons"] == ["length"]


def test_error_envelope_has_no_buffers():
    frame = encode_frame(
        {"id": 4, "ok": False, "op": "sample", "error": {"type": "bad_input", "message": "m", "traceback": "t"}}
    )
    head = json.loads(frame[8:])
    assert head == {
        "id": 4,
        "ok": False,
        "op": "sample",
        "error": {"type": "bad_input", "message": "m", "traceback": "t"},
    }


def rejection(frame):
    with pytest.raises(ProtocolError) as info:
        decode(frame)
    return str(info.value)


def test_unknown_field_in_sample_body():
    msg = rejection(build_frame(1, "sample", sample_body(temperatur=0.5)))
    assert msg.startswith("invalid 'sample' request") and "'temperatur'" in msg


def test_negative_temperature():
    msg = rejection(build_frame(1, "sample", sample_body(temperature=-0.5)))
    assert "temperature" in msg and "-0.5" in msg and "minimum" in msg


@pytest.mark.parametrize(
    "field,value,words",
    [
        ("n", "3", ["n:", "'3'", "integer"]),
        ("n", 0, ["n:", "minimum"]),
        ("n", 1.5, ["n:", "integer"]),
        ("top_p", 0, ["top_p:", "less than or equal to the minimum of 0"]),
        ("top_p", 1.01, ["top_p:", "maximum"]),
        ("stop_token_ids", [1, -1], ["stop_token_ids.1:", "-1"]),
        ("seed", "x", ["seed:", "'x'"]),
        ("model", "", ["model:"]),
        ("use_cache", 1, ["use_cache:", "boolean"]),
        ("prompt_ids", {"$tensor": 0, "dtype": "int8", "shape": [5]}, ["prompt_ids.dtype:", "'int8'"]),
    ],
)
def test_wrong_values_name_the_field(field, value, words):
    msg = rejection(build_frame(1, "sample", sample_body(**{field: value})))
    assert msg.startswith("invalid 'sample' request: ")
    for word in words:
        assert word in msg, (word, msg)


def test_missing_field_named():
    body = sample_body()
    del body["seed"]
    assert "'seed' is a required property" in rejection(build_frame(1, "sample", body))


def test_unknown_op():
    msg = rejection(build_frame(1, "frobnicate", {}))
    assert msg.startswith("invalid request envelope: ") and "op:" in msg and "'frobnicate'" in msg


@pytest.mark.parametrize(
    "envelope,words",
    [
        ({"id": -1, "op": "ping", "body": {}, "buffers": []}, ["id:"]),
        ({"id": 1, "op": "ping", "body": {}}, ["'buffers' is a required property"]),
        ({"id": 1, "op": "ping", "body": {}, "buffers": [], "extra": 1}, ["'extra'"]),
        ({"id": 1, "op": "ping", "body": [], "buffers": []}, ["body:"]),
        ({"id": 1, "op": "ping", "body": {}, "buffers": [[0]]}, ["buffers.0:"]),
        ({"id": 1, "op": "ping", "body": {"x": 1}, "buffers": []}, ["invalid 'ping' request", "'x'"]),
        (
            {"id": 1, "op": "hello", "body": {"token": "t", "protocol_version": "1", "client": "c"}, "buffers": []},
            ["protocol_version:", "integer"],
        ),
    ],
)
def test_invalid_envelopes(envelope, words):
    msg = rejection(raw_frame(envelope))
    for word in words:
        assert word in msg, (word, msg)


def test_tensor_shape_must_match_bytes():
    body = {
        "model": "m",
        "token_ids": {"$tensor": 0, "dtype": "int32", "shape": [3]},
        "lengths": {"$tensor": 1, "dtype": "int64", "shape": [1]},
        "temperature": 1.0,
    }
    frame = raw_frame(
        {"id": 1, "op": "logprobs", "body": body, "buffers": [[0, 8], [8, 8]]},
        struct.pack("<2i", 1, 2) + struct.pack("<q", 2),
    )
    assert rejection(frame) == "tensor 0: shape [3] does not match 8 bytes"


def test_tensor_outside_frame_or_without_buffer():
    body = {
        "model": "m",
        "token_ids": {"$tensor": 0, "dtype": "int32", "shape": [4]},
        "lengths": {"$tensor": 1, "dtype": "int32", "shape": [1]},
        "temperature": 1.0,
    }
    blob = struct.pack("<4i", 1, 2, 3, 4) + struct.pack("<i", 4)
    outside = raw_frame({"id": 1, "op": "logprobs", "body": body, "buffers": [[8, 16], [16, 4]]}, blob)
    assert "tensor 0 lies outside the frame" in rejection(outside)
    missing = raw_frame({"id": 1, "op": "logprobs", "body": body, "buffers": [[0, 16]]}, blob)
    assert "tensor reference 1 has no buffer" in rejection(missing)


def test_truncated_frames():
    with pytest.raises(ProtocolError, match="too short"):
        decode_frame(b"\x01\x00")
    frame = raw_frame({"id": 1, "op": "ping", "body": {}, "buffers": []})
    with pytest.raises(ProtocolError, match="exceeds"):
        decode_frame(frame[4:-3])


def test_valid_requests_of_every_op():
    bodies = {
        "hello": {"token": "abc", "protocol_version": PROTOCOL_VERSION, "client": "test"},
        "ping": {},
        "status": {},
        "shutdown": {},
        "load_model": {
            "name": "m",
            "path": "/x",
            "dtype": "auto",
            "rope_scaling": {"type": "yarn", "factor": None, "target_length": 4096},
            "quantize": "nf4",
            "allow_non_finite": False,
            "replace": False,
        },
        "unload_model": {"name": "m"},
        "save_model": {"name": "m", "out_dir": "/y", "max_shard_bytes": None},
        "convert_llama2c": {"bin_path": "/a.bin", "out_dir": "/o"},
        "cancel": {"request_id": 4},
        "echo": {"tensors": {"a": {"$tensor": 0, "dtype": "float32", "shape": [2, 2]}}},
        "logprobs": {
            "model": "m",
            "token_ids": {"$tensor": 0, "dtype": "int32", "shape": [2]},
            "lengths": {"$tensor": 1, "dtype": "int32", "shape": [1]},
            "temperature": 0.7,
        },
    }
    for op, body in bodies.items():
        validate_request({"id": 0, "op": op, "body": body, "buffers": []})
    with pytest.raises(ProtocolError, match=r"tensors\.a: 'shape' is a required property"):
        validate_request(
            {"id": 0, "op": "echo", "body": {"tensors": {"a": {"$tensor": 0, "dtype": "int32"}}}, "buffers": []}
        )
    with pytest.raises(ProtocolError, match="dtype"):
        validate_request(
            {
                "id": 0,
                "op": "load_model",
                "body": {
                    "name": "m",
                    "path": "/x",
                    "dtype": "int8",
                    "rope_scaling": None,
                    "quantize": None,
                    "allow_non_finite": False,
                    "replace": False,
                },
                "buffers": [],
            }
        )
