"""RoPE context extension: frequencies against the published formulas (written out here, not
taken from the module), config parsing, and scaled models decoding consistently."""

import dataclasses
import math

import pytest
import torch
from bridge_wire import llama_config, qwen2_config, random_model
from test_model import cached_logits, full_logits
from thinkcells_bridge import native_kernels
from thinkcells_bridge.model import CausalLM, ModelConfig, ModelConfigError, rope_tables
from thinkcells_bridge.rope_scaling import (
    RopeScaling,
    inv_freq_and_attention_factor,
    parse_rope_scaling,
    with_rope_scaling,
)


def plain_inv_freq(head_dim, theta):
    """Su et al.'s RoPE: dimension pair i turns at theta^(-2i/d)."""
    return [theta ** (-2 * i / head_dim) for i in range(head_dim // 2)]


def assert_freqs(got, expected):
    assert got.dtype == torch.float64 and got.shape == (len(expected),)
    expected = torch.tensor(expected, dtype=torch.float64)
    assert torch.allclose(got, expected, rtol=1e-12, atol=0), (got - expected).abs().max()


def scaling(block, max_position_embeddings=4096):
    return parse_rope_scaling(
        {"max_position_embeddings": max_position_embeddings, "rope_scaling": block}, "config.json"
    )


# -- frequencies -------------------------------------------------------------------------------


def test_linear_divides_every_frequency():
    s = scaling({"type": "linear", "factor": 4.0})
    inv_freq, attention = inv_freq_and_attention_factor(64, 10000.0, s, 100000)
    assert_freqs(inv_freq, [f / 4 for f in plain_inv_freq(64, 10000.0)])
    assert attention == 1.0


def test_dynamic_ntk_below_and_above_the_original_length():
    s = scaling({"type": "dynamic", "factor": 2.0}, max_position_embeddings=2048)
    assert s.original_max_position_embeddings == 2048
    for seq_len in (None, 1000, 2048):  # up to the original length: plain RoPE, bit for bit
        inv_freq, attention = inv_freq_and_attention_factor(64, 10000.0, s, seq_len)
        assert torch.equal(inv_freq, inv_freq_and_attention_factor(64, 10000.0, None)[0]) and attention == 1.0
    # Above it, bloc97/emozilla's base: theta * (factor * L / L0 - (factor - 1)) ** (d / (d - 2)).
    base = 10000.0 * (2.0 * 8192 / 2048 - 1.0) ** (64 / 62)
    inv_freq, attention = inv_freq_and_attention_factor(64, 10000.0, s, 8192)
    assert_freqs(inv_freq, plain_inv_freq(64, base))
    assert attention == 1.0
    assert inv_freq[0] == 1.0 and inv_freq[-1] < plain_inv_freq(64, 10000.0)[-1] / 4  # fast kept, slow stretched


def test_yarn_blends_extrapolation_into_interpolation():
    # head_dim 64, theta 10000, factor 4, pretrained on 2048 positions. Dimension i turns
    # 2048 / (2 pi 10000^(2i/64)) times over the original context; it turns beta_fast = 32
    # times at i = 64 ln(2048 / (32 * 2 pi)) / (2 ln 10000) = 8.06 (floored: 8), and
    # beta_slow = 1 time at i = 64 ln(2048 / (2 pi)) / (2 ln 10000) = 20.1 (ceiled: 21).
    s = scaling({"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 2048})
    inv_freq, attention = inv_freq_and_attention_factor(64, 10000.0, s)
    plain = plain_inv_freq(64, 10000.0)
    expected = []
    for i, f in enumerate(plain):
        interpolated = min(max((i - 8) / (21 - 8), 0.0), 1.0)
        expected.append(f / 4 * interpolated + f * (1 - interpolated))
    assert_freqs(inv_freq, expected)
    assert_freqs(inv_freq[:9], plain[:9])  # pure extrapolation
    assert_freqs(inv_freq[21:], [f / 4 for f in plain[21:]])  # pure interpolation
    assert attention == pytest.approx(0.1 * math.log(4.0) + 1, rel=1e-15)


def test_yarn_untruncated_ramp_and_attention_factor_options():
    s = scaling(
        {
            "type": "yarn",
            "factor": 4.0,
            "original_max_position_embeddings": 2048,
            "truncate": False,
            "beta_fast": 16.0,
            "beta_slow": 2.0,
        }
    )
    low = 64 * math.log(2048 / (16 * 2 * math.pi)) / (2 * math.log(10000))
    high = 64 * math.log(2048 / (2 * 2 * math.pi)) / (2 * math.log(10000))
    expected = []
    for i, f in enumerate(plain_inv_freq(64, 10000.0)):
        interpolated = min(max((i - low) / (high - low), 0.0), 1.0)
        expected.append(f / 4 * interpolated + f * (1 - interpolated))
    assert_freqs(inv_freq_and_attention_factor(64, 10000.0, s)[0], expected)

    given = scaling({"type": "yarn", "factor": 4.0, "attention_factor": 1.5})
    assert inv_freq_and_attention_factor(64, 10000.0, given)[1] == 1.5
    # DeepSeek's ratio of two temperatures.
    deepseek = scaling({"type": "yarn", "factor": 40, "mscale": 1.0, "mscale_all_dim": 0.5})
    expected_factor = (0.1 * math.log(40) + 1) / (0.1 * 0.5 * math.log(40) + 1)
    assert inv_freq_and_attention_factor(64, 10000.0, deepseek)[1] == pytest.approx(expected_factor, rel=1e-15)


def test_llama3_matches_the_llama_3_1_rule():
    # Meta's apply_scaling for Llama 3.1, as published with the model.
    factor, low_freq_factor, high_freq_factor, old_context_len = 8, 1, 4, 8192
    expected = []
    for f in plain_inv_freq(128, 500000.0):
        wavelen = 2 * math.pi / f
        if wavelen < old_context_len / high_freq_factor:
            expected.append(f)
        elif wavelen > old_context_len / low_freq_factor:
            expected.append(f / factor)
        else:
            smooth = (old_context_len / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor)
            expected.append((1 - smooth) * f / factor + smooth * f)
    config = {  # Llama-3.1-8B's config.json, in part
        "max_position_embeddings": 131072,
        "rope_theta": 500000.0,
        "rope_scaling": {
            "factor": 8.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 8192,
            "rope_type": "llama3",
        },
    }
    s = parse_rope_scaling(config, "config.json")
    inv_freq, attention = inv_freq_and_attention_factor(128, 500000.0, s)
    assert_freqs(inv_freq, expected)
    assert attention == 1.0
    plain = plain_inv_freq(128, 500000.0)
    kept = sum(a == b for a, b in zip(expected, plain))
    divided = sum(a == b / 8 for a, b in zip(expected, plain))
    assert kept > 0 and divided > 0 and kept + divided < 64  # all three regimes occur


# -- the model's tables ----------------------------------------------------------------------


def old_rope_table(config, length):
    """rope_tables as it was before rope scaling existed."""
    half = config.head_dim // 2
    inv_freq = 1.0 / (config.rope_theta ** (torch.arange(0, half, dtype=torch.float64) / half))
    freqs = torch.outer(torch.arange(length, dtype=torch.float64), inv_freq)
    emb = torch.cat((freqs, freqs), dim=-1)
    sin = emb.sin()
    sin[:, :half].neg_()
    return torch.stack((emb.cos(), sin), dim=1).float()


@pytest.mark.parametrize(
    "hf_config",
    [
        llama_config(),
        qwen2_config(),
        llama_config(head_dim=12),
        llama_config(hidden_size=512, max_position_embeddings=4096),
    ],
)
def test_plain_rope_table_is_bit_identical_to_before(hf_config):
    config = ModelConfig.from_hf(hf_config)
    assert config.rope_scaling is None
    assert torch.equal(rope_tables(config, 3000, "cpu"), old_rope_table(config, 3000))
    # Dynamic NTK within the original length is plain RoPE too.
    dynamic = ModelConfig.from_hf({**hf_config, "rope_scaling": {"type": "dynamic", "factor": 4.0}})
    assert torch.equal(
        rope_tables(dynamic, config.max_position_embeddings, "cpu"),
        old_rope_table(config, config.max_position_embeddings),
    )


def test_yarn_table_carries_the_attention_factor():
    config = ModelConfig.from_hf(
        llama_config(
            head_dim=64, rope_scaling={"type": "yarn", "factor": 4.0, "original_max_position_embeddings": 2048}
        )
    )
    table = rope_tables(config, 300, "cpu")
    inv_freq, attention = inv_freq_and_attention_factor(64, 10000.0, config.rope_scaling)
    angles = torch.arange(300, dtype=torch.float64)[:, None] * torch.cat((inv_freq, inv_freq))
    sign = torch.cat((-torch.ones(32), torch.ones(32))).double()
    assert attention > 1.1
    assert torch.allclose(table[:, 0].double(), attention * angles.cos(), atol=1e-6)
    assert torch.allclose(table[:, 1].double(), attention * sign * angles.sin(), atol=1e-6)


# -- parsing ---------------------------------------------------------------------------------


def test_parse_accepts_both_key_spellings_and_default():
    old = scaling({"type": "linear", "factor": 2})
    assert old == scaling({"rope_type": "linear", "factor": 2.0}) == RopeScaling("linear", 2.0, 4096)
    assert isinstance(old.factor, float)
    for block in (None, {}, {"type": "default"}, {"rope_type": "default", "rope_theta": 10000.0}):
        assert scaling(block) is None
    assert parse_rope_scaling({"max_position_embeddings": 64}, "c.json") is None


def test_parse_original_length_defaults():
    assert scaling({"type": "yarn", "factor": 4.0}).original_max_position_embeddings == 4096
    assert (
        scaling(
            {"type": "yarn", "factor": 4.0, "original_max_position_embeddings": 1024}
        ).original_max_position_embeddings
        == 1024
    )
    # transformers' dynamic NTK measures from max_position_embeddings whatever the block says.
    assert (
        scaling(
            {"type": "dynamic", "factor": 2.0, "original_max_position_embeddings": 1024}
        ).original_max_position_embeddings
        == 4096
    )


def test_transformers_5_rope_parameters():
    config = llama_config(rope_parameters={"rope_type": "default", "rope_theta": 500000.0})
    del config["rope_theta"]
    plain = ModelConfig.from_hf(config)
    assert plain.rope_theta == 500000.0 and plain.rope_scaling is None
    config["rope_parameters"] = {
        "rope_type": "yarn",
        "rope_theta": 1e6,
        "factor": 4.0,
        "original_max_position_embeddings": 32,
    }
    c = ModelConfig.from_hf(config)
    assert c.rope_theta == 1e6 and c.rope_scaling == RopeScaling("yarn", 4.0, 32)


@pytest.mark.parametrize(
    "block,expected",
    [
        (
            {"type": "longrope", "factor": 2.0},
            "rope_scaling type 'longrope' is not supported; expected one of linear, dynamic, yarn, llama3",
        ),
        ({"factor": 2.0}, "rope_scaling field 'rope_type' (or 'type') is missing"),
        ({"type": "linear"}, "rope_scaling field 'factor' is missing (needed by type 'linear')"),
        ({"type": "dynamic", "factor": "2"}, "rope_scaling field 'factor' must be a number >= 1, got '2'"),
        ({"type": "yarn", "factor": 0.5}, "rope_scaling field 'factor' must be a number >= 1, got 0.5"),
        ({"type": "linear", "factor": True}, "rope_scaling field 'factor' must be a number >= 1, got True"),
        (
            {"type": "yarn", "factor": 4.0, "original_max_position_embeddings": 20.5},
            "rope_scaling field 'original_max_position_embeddings' must be an integer > 0, got 20.5",
        ),
        (
            {"type": "yarn", "factor": 4.0, "beta_fast": 1.0, "beta_slow": 2.0},
            "rope_scaling field 'beta_fast' must exceed 'beta_slow', got 1 and 2",
        ),
        (
            {"type": "yarn", "factor": 4.0, "attention_factor": -1},
            "rope_scaling field 'attention_factor' must be a number > 0, got -1",
        ),
        (
            {"type": "yarn", "factor": 4.0, "truncate": "no"},
            "rope_scaling field 'truncate' must be true or false, got 'no'",
        ),
        (
            {"type": "llama3", "factor": 8.0, "high_freq_factor": 4.0},
            "rope_scaling field 'low_freq_factor' is missing (needed by type 'llama3')",
        ),
        (
            {"type": "llama3", "factor": 8.0, "low_freq_factor": 4.0, "high_freq_factor": 1.0},
            "rope_scaling field 'high_freq_factor' must exceed 'low_freq_factor', got 1 and 4",
        ),
        ([1, 2], "rope_scaling must be an object, got [1, 2]"),
    ],
)
def test_parse_errors_name_the_file_and_field(block, expected):
    with pytest.raises(ValueError) as direct:
        parse_rope_scaling({"rope_scaling": block}, "/models/m/config.json")
    with pytest.raises(ModelConfigError) as via_model:
        ModelConfig.from_hf(llama_config(rope_scaling=block), source="/models/m/config.json")
    assert str(direct.value) == str(via_model.value) == f"/models/m/config.json: {expected}"


# -- scaling at load time -------------------------------------------------------------------


def test_with_rope_scaling():
    config = ModelConfig.from_hf(llama_config(max_position_embeddings=2048))
    stretched = with_rope_scaling(config, "yarn", target_length=8192)
    assert stretched.rope_scaling == RopeScaling("yarn", 4.0, 2048)
    assert stretched.max_position_embeddings == 8192 and config.max_position_embeddings == 2048
    assert dataclasses.replace(stretched, rope_scaling=None, max_position_embeddings=2048) == config
    by_factor = with_rope_scaling(config, "linear", 2.5)
    assert by_factor.rope_scaling == RopeScaling("linear", 2.5, 2048) and by_factor.max_position_embeddings == 5120
    both = with_rope_scaling(config, "dynamic", 2, 3000)
    assert both.rope_scaling == RopeScaling("dynamic", 2.0, 2048) and both.max_position_embeddings == 3000
    assert with_rope_scaling(config, "llama3", target_length=16384).rope_scaling == RopeScaling(
        "llama3", 8.0, 2048, low_freq_factor=1.0, high_freq_factor=4.0
    )


@pytest.mark.parametrize(
    "args,expected",
    [
        (("ntk", 2.0, None), "rope scaling type 'ntk' is not supported; expected one of linear, dynamic, yarn, llama3"),
        (("yarn", None, None), "rope scaling needs a factor or a target_length"),
        (
            ("yarn", None, 1000),
            "rope scaling target_length must be an integer >= max_position_embeddings (2048), got 1000",
        ),
        (("yarn", 0.5, None), "rope scaling factor must be a number >= 1, got 0.5"),
        (("yarn", "4", None), "rope scaling factor must be a number >= 1, got '4'"),
    ],
)
def test_with_rope_scaling_errors(args, expected):
    config = ModelConfig.from_hf(llama_config(max_position_embeddings=2048))
    with pytest.raises(ValueError) as info:
        with_rope_scaling(config, *args)
    assert str(info.value) == expected
    scaled = ModelConfig.from_hf(llama_config(rope_scaling={"type": "linear", "factor": 2.0}))
    with pytest.raises(ValueError, match="already sets 'linear' rope scaling"):
        with_rope_scaling(scaled, "yarn", 2.0)


# -- scaled models ----------------------------------------------------------------------------


def rebuilt(model, config):
    """`model`'s weights under another config."""
    other = CausalLM(config)
    other.load_state_dict(model.state_dict())
    return other.eval()


def scaled_model(kind):
    base = random_model(llama_config(head_dim=16, max_position_embeddings=16), seed=5)
    if kind == "dynamic":  # stretched at load time: NTK at 64 positions, past the original 16
        return base, rebuilt(base, with_rope_scaling(base.config, "dynamic", target_length=64))
    block = {
        "linear": {"type": "linear", "factor": 2.0},
        "yarn": {"type": "yarn", "factor": 4.0, "original_max_position_embeddings": 8},
        "llama3": {
            "rope_type": "llama3",
            "factor": 8.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 8,
        },
    }[kind]
    config = ModelConfig.from_hf(llama_config(head_dim=16, max_position_embeddings=64, rope_scaling=block))
    return base, rebuilt(base, config)


@pytest.mark.parametrize("kind", ["linear", "dynamic", "yarn", "llama3"])
def test_scaled_model_cached_native_decode_matches_full_forward(kind):
    plain, model = scaled_model(kind)
    ids = torch.randint(3, 97, (3, 40), generator=torch.Generator().manual_seed(6))
    pad = torch.tensor([0, 3, 9])
    decoder = native_kernels.native_decoder(model)
    assert decoder is not None  # every step runs in C, reading the scaled table
    with torch.no_grad():
        expected = full_logits(model, ids, pad)
        got = cached_logits(model, ids, pad, prefill=5, decoder=decoder)
        unscaled = full_logits(plain, ids, pad)
    for row, start in enumerate(pad.tolist()):  # left padding's own logits mean nothing
        assert torch.allclose(got[row, start:], expected[row, start:], atol=1e-5), (
            (got[row, start:] - expected[row, start:]).abs().max()
        )
        assert (expected[row, start:] - unscaled[row, start:]).abs().max() > 1e-2  # the scaling changed the numbers


def test_dynamic_table_resets_once_sequences_fit_again():
    model = random_model(
        llama_config(head_dim=16, max_position_embeddings=16, rope_scaling={"type": "dynamic", "factor": 2.0}), seed=7
    )
    positions = torch.arange(10)[None, :]
    fresh = rope_tables(model.config, 16, "cpu")[positions]
    assert torch.equal(model.rope(positions, 10, torch.float32), fresh)
    long = model.rope(torch.arange(40)[None, :], 40, torch.float32)
    assert torch.equal(long[0], rope_tables(model.config, 40, "cpu"))  # NTK for 40 positions
    assert not torch.allclose(long[:, :10], fresh)
    assert torch.equal(model.rope(positions, 10, torch.float32), fresh)
