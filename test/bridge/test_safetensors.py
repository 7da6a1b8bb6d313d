import json
import os
import struct

import pytest
import torch
from thinkcells_bridge.safetensors import SafetensorsError, read_safetensors, write_safetensors


def special_bits(dtype, bits_dtype, specials):
    """6x7 random bit patterns (so NaNs with arbitrary payloads occur) plus a row of 7 specials."""
    g = torch.Generator().manual_seed(0)
    info = torch.iinfo(bits_dtype)
    rand = torch.randint(info.min, info.max, (6, 7), generator=g, dtype=torch.int64).to(bits_dtype)
    fixed = torch.tensor(specials, dtype=torch.int64).to(bits_dtype)
    return torch.cat([rand.flatten(), fixed]).view(dtype).reshape(7, 7)


def bits_to_signed(values, bits):
    return [v - (1 << bits) if v >= 1 << (bits - 1) else v for v in values]


F16_SPECIALS = bits_to_signed([0x7C00, 0xFC00, 0x7E00, 0x7C01, 0xFE5A, 0x8000, 0x0001], 16)
BF16_SPECIALS = bits_to_signed([0x7F80, 0xFF80, 0x7FC0, 0x7F81, 0xFFA5, 0x8000, 0x0001], 16)
F32_SPECIALS = bits_to_signed([0x7F800000, 0xFF800000, 0x7FC00000, 0x7F800001, 0xFFC12345, 0x80000000, 1], 32)


def sample_tensors():
    g = torch.Generator().manual_seed(1)
    return {
        "f16": special_bits(torch.float16, torch.int16, F16_SPECIALS),
        "bf16": special_bits(torch.bfloat16, torch.int16, BF16_SPECIALS),
        "f32": special_bits(torch.float32, torch.int32, F32_SPECIALS),
        "f64": torch.randn(3, 2, generator=g, dtype=torch.float64),
        "i64": torch.tensor([[-(2**63), 2**63 - 1], [0, -1]], dtype=torch.int64),
        "i32": torch.tensor([-(2**31), 2**31 - 1, 7], dtype=torch.int32),
        "u8": torch.arange(256, dtype=torch.uint8).reshape(16, 16),
        "bool": torch.tensor([[True, False, True]]),
        "scalar": torch.tensor(3.25, dtype=torch.bfloat16),
        "empty": torch.zeros(0, 4, dtype=torch.float16),
        "noncontig": torch.arange(12, dtype=torch.float32).reshape(3, 4).t(),
    }


def same_bits(a, b):
    """Bit-for-bit equality (NaN payloads included), plus dtype and shape."""
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    if a.dtype == torch.bool:
        return torch.equal(a, b)
    return torch.equal(a.contiguous().reshape(-1).view(torch.uint8), b.contiguous().reshape(-1).view(torch.uint8))


def build_file(path, header, data=b"", header_len=None):
    """Hand-build a safetensors file with struct + json, independent of the writer."""
    raw = json.dumps(header).encode() if not isinstance(header, bytes) else header
    n = len(raw) if header_len is None else header_len
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", n) + raw + data)
    return str(path)


def test_round_trip_is_bit_exact(tmp_path):
    tensors = sample_tensors()
    path = tmp_path / "t.safetensors"
    write_safetensors(path, tensors, {"format": "pt", "note": "ünïcode"})
    loaded, metadata = read_safetensors(path)
    assert metadata == {"format": "pt", "note": "ünïcode"}
    assert sorted(loaded) == sorted(tensors)
    for name, t in tensors.items():
        assert same_bits(loaded[name], t.contiguous()), name
    # The specials really survived (not just equal random bits).
    assert torch.isnan(loaded["bf16"].float()).any() and torch.isinf(loaded["f16"].float()).any()
    assert not list(tmp_path.glob("*.tmp-*"))


def test_header_layout_follows_spec(tmp_path):
    tensors = sample_tensors()
    path = tmp_path / "t.safetensors"
    write_safetensors(path, tensors)
    blob = path.read_bytes()
    (n,) = struct.unpack("<Q", blob[:8])
    assert n % 8 == 0 and 8 + n <= len(blob)
    text = blob[8 : 8 + n].decode("utf-8")
    assert set(text[text.rindex("}") + 1 :]) <= {" "}  # alignment padding is spaces
    header = json.loads(text)
    assert "__metadata__" not in header  # no metadata given, none written
    assert sorted(header) == sorted(tensors)
    offset = 0  # the data section is covered exactly, without gaps (in the library's order)
    for name in sorted(header, key=lambda n: header[n]["data_offsets"]):
        begin, end = header[name]["data_offsets"]
        assert begin == offset
        offset = end
    assert offset == len(blob) - 8 - n
    assert header["bf16"]["dtype"] == "BF16" and header["bool"]["dtype"] == "BOOL"
    assert header["scalar"]["shape"] == [] and header["empty"]["shape"] == [0, 4]


def test_reads_hand_built_file(tmp_path):
    data = (
        struct.pack("<2H", 0x3F80, 0xC040)  # bf16 1.0, -3.0
        + struct.pack("<e", 1.5)
        + struct.pack("<3q", -5, 0, 2**40)
        + bytes([1, 0])
    )
    header = {  # deliberately unsorted names and out-of-order offsets
        "z_bool": {"dtype": "BOOL", "shape": [2], "data_offsets": [30, 32]},
        "a_bf16": {"dtype": "BF16", "shape": [2, 1], "data_offsets": [0, 4]},
        "__metadata__": {"k": "v"},
        "m_i64": {"dtype": "I64", "shape": [3], "data_offsets": [6, 30]},
        "b_f16": {"dtype": "F16", "shape": [], "data_offsets": [4, 6]},
    }
    tensors, metadata = read_safetensors(build_file(tmp_path / "h.safetensors", header, data))
    assert metadata == {"k": "v"}
    assert tensors["a_bf16"].dtype == torch.bfloat16
    assert tensors["a_bf16"].tolist() == [[1.0], [-3.0]]
    assert tensors["b_f16"].dtype == torch.float16 and tensors["b_f16"].item() == 1.5
    assert tensors["m_i64"].tolist() == [-5, 0, 2**40]
    assert tensors["z_bool"].tolist() == [True, False]


def test_tensors_are_independent_of_the_file(tmp_path):
    path = tmp_path / "t.safetensors"
    write_safetensors(path, {"x": torch.arange(6, dtype=torch.float32)})
    loaded, _ = read_safetensors(path)
    write_safetensors(path, {"x": torch.zeros(6)})
    os.remove(path)
    assert loaded["x"].tolist() == [0, 1, 2, 3, 4, 5]


def test_tied_tensors_are_written_as_copies(tmp_path):
    shared = torch.arange(6, dtype=torch.float32).reshape(2, 3)
    path = tmp_path / "tied.safetensors"
    write_safetensors(path, {"embed": shared, "lm_head": shared, "view": shared.t()})
    loaded, _ = read_safetensors(path)
    assert (
        torch.equal(loaded["embed"], shared)
        and torch.equal(loaded["lm_head"], shared)
        and torch.equal(loaded["view"], shared.t())
    )


def test_reads_are_memory_mapped(tmp_path):
    path = tmp_path / "big.safetensors"
    write_safetensors(path, {"w": torch.ones(1 << 20)})  # 4 MiB
    loaded, _ = read_safetensors(path)
    with open("/proc/self/maps") as maps:
        assert str(path) in maps.read()  # the tensor's memory is the file's mapping
    assert loaded["w"].sum().item() == 1 << 20


def error_for(path):
    with pytest.raises(SafetensorsError) as info:
        read_safetensors(path)
    assert str(path) in str(info.value)
    return str(info.value)


def test_error_file_shorter_than_8_bytes(tmp_path):
    path = tmp_path / "short.safetensors"
    path.write_bytes(b"\x01\x02\x03")
    assert "header too small" in error_for(path)


def test_error_header_length_beyond_file(tmp_path):
    path = build_file(tmp_path / "big.safetensors", {}, header_len=10_000)
    assert "invalid header length" in error_for(path)


@pytest.mark.parametrize("raw", [b"\xff\xfe{}", b"{not json", b"[1, 2]"])
def test_error_bad_header(tmp_path, raw):
    msg = error_for(build_file(tmp_path / "bad.safetensors", raw))
    assert "JSON" in msg or "UTF-8" in msg


def test_error_unknown_dtype(tmp_path):
    header = {"w": {"dtype": "Q4_K", "shape": [1], "data_offsets": [0, 1]}}
    msg = error_for(build_file(tmp_path / "d.safetensors", header, b"\x00"))
    assert "unknown variant `Q4_K`" in msg


def test_error_shape_does_not_match_offsets(tmp_path):
    header = {"w": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 20]}}
    msg = error_for(build_file(tmp_path / "s.safetensors", header, bytes(20)))
    assert "'w'" in msg and "24 bytes" in msg


def test_error_truncated_file(tmp_path):
    path = tmp_path / "trunc.safetensors"
    write_safetensors(path, {"a": torch.ones(4), "b": torch.ones(100)})
    path.write_bytes(path.read_bytes()[:-10])
    msg = error_for(path)
    assert "'b'" in msg and "truncated" in msg


def test_error_overlapping_offsets(tmp_path):
    header = {
        "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
        "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]},
    }
    msg = error_for(build_file(tmp_path / "o.safetensors", header, bytes(12)))
    assert "invalid offset for tensor `b`" in msg


def test_write_rejects_unsupported_dtype_and_keeps_old_file(tmp_path):
    path = tmp_path / "c.safetensors"
    write_safetensors(path, {"ok": torch.ones(2)})
    before = path.read_bytes()
    with pytest.raises(SafetensorsError) as info:
        write_safetensors(path, {"cplx": torch.ones(2, dtype=torch.complex128)})
    assert str(path) in str(info.value) and "'cplx'" in str(info.value)
    assert path.read_bytes() == before
    assert not list(tmp_path.glob("*.tmp-*"))
