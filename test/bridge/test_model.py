import math

import pytest
import torch
import torch.nn.functional as F
from bridge_wire import llama_config, qwen2_config, random_model
from thinkcells_bridge import native_kernels
from thinkcells_bridge.model import KVCache, ModelConfig, ModelConfigError
from thinkcells_bridge.sampling import SampleParams, sample

CONFIGS = {
    "llama": llama_config(),
    "qwen2": qwen2_config(),
    # head_dim given explicitly and unlike hidden/heads: the native kernel's generic-D loop.
    "llama_head12": llama_config(head_dim=12, num_key_value_heads=1),
}


@pytest.fixture(scope="module", params=sorted(CONFIGS))
def model(request):
    return random_model(CONFIGS[request.param], seed=len(request.param))


def random_ids(shape, seed, vocab=97):
    return torch.randint(3, vocab, shape, generator=torch.Generator().manual_seed(seed))


def full_logits(model, ids, pad=None):
    b, t = ids.shape
    pad = torch.zeros(b, dtype=torch.long) if pad is None else pad
    positions = (torch.arange(t)[None, :] - pad[:, None]).clamp(min=0)
    return model.logits(model.hidden_states(ids, positions, pad))


def cached_logits(model, ids, pad=None, prefill=1, decoder=None):
    """Prefill the first `prefill` tokens, then feed the rest one token at a time (through
    `decoder`, a native_kernels.NativeDecoder, when given)."""
    b, t = ids.shape
    pad = torch.zeros(b, dtype=torch.long) if pad is None else pad
    positions = (torch.arange(t)[None, :] - pad[:, None]).clamp(min=0)
    cache = KVCache(model.config, pad, t, model.output_weight().dtype)
    out = [model.logits(model.hidden_states(ids[:, :prefill], positions[:, :prefill], pad, cache))]
    for i in range(prefill, t):
        one, at = ids[:, i : i + 1], positions[:, i : i + 1]
        hidden = decoder.step(one, at, cache) if decoder is not None else model.hidden_states(one, at, pad, cache)
        out.append(model.logits(hidden))
    assert cache.length == t
    return torch.cat(out, dim=1)


@pytest.mark.parametrize("prefill", [1, 4])
def test_cached_decode_matches_full_forward_no_grad(model, prefill):
    ids = random_ids((3, 9), seed=1)
    with torch.no_grad():
        expected = full_logits(model, ids)
        plain = cached_logits(model, ids, prefill=prefill)
        native = cached_logits(model, ids, prefill=prefill, decoder=native_kernels.native_decoder(model))
    assert expected.shape == (3, 9, 97)
    assert torch.allclose(plain, expected, atol=1e-5), (plain - expected).abs().max()
    assert torch.allclose(native, expected, atol=1e-5), (native - expected).abs().max()


def test_cached_decode_matches_full_forward_with_grad(model):
    ids = random_ids((2, 7), seed=2)
    with torch.no_grad():
        expected = full_logits(model, ids)
    got = cached_logits(model, ids, prefill=2)
    assert got.requires_grad  # the autograd path
    assert torch.allclose(got.detach(), expected, atol=1e-5), (got.detach() - expected).abs().max()


@pytest.mark.parametrize("grad", [False, True], ids=["no_grad", "grad"])
def test_left_padding_matches_unpadded_rows(model, grad):
    short, long = random_ids((1, 5), seed=3), random_ids((1, 8), seed=4)
    k = long.shape[1] - short.shape[1]
    garbage = random_ids((1, k), seed=5)  # pad slots hold arbitrary tokens: only the mask hides them
    batch_prompt = torch.cat([torch.cat([garbage, short], dim=1), long])
    pad = torch.tensor([k, 0])
    steps = 4
    cont_short, cont_long = random_ids((1, steps), seed=6), random_ids((1, steps), seed=7)

    # Without grad the cached steps go through the native decoder, as sampling's do; with grad
    # through torch.
    decoder = None if grad else native_kernels.native_decoder(model)
    with torch.set_grad_enabled(grad):
        # Alone: unpadded prompt then teacher-forced continuation, through the cache.
        alone = [
            cached_logits(model, torch.cat([p, c], dim=1), prefill=p.shape[1], decoder=decoder)[:, p.shape[1] - 1 :]
            for p, c in [(short, cont_short), (long, cont_long)]
        ]
        # Together: left-padded prefill, then the same continuations step by step.
        ids = torch.cat([batch_prompt, torch.cat([cont_short, cont_long])], dim=1)
        together = cached_logits(model, ids, pad=pad, prefill=batch_prompt.shape[1], decoder=decoder)[
            :, batch_prompt.shape[1] - 1 :
        ]
        # And without a cache: one forward over the padded batch.
        full = full_logits(model, ids, pad=pad)[:, batch_prompt.shape[1] - 1 :]

    for row in range(2):
        assert together[row].shape == (steps + 1, 97)
        assert torch.allclose(together[row], alone[row][0], atol=1e-5), (
            row,
            (together[row] - alone[row][0]).abs().max(),
        )
        assert torch.allclose(full[row], alone[row][0], atol=1e-5), (row, (full[row] - alone[row][0]).abs().max())


def native_vs_torch(m, ids, pad, prefill):
    """Cached decode with the native decoder, then with the model's torch code."""
    decoder = native_kernels.native_decoder(m)
    assert decoder is not None, "the native step should apply (and build) here"
    with torch.no_grad():
        return cached_logits(m, ids, pad=pad, prefill=prefill, decoder=decoder), cached_logits(
            m, ids, pad=pad, prefill=prefill
        )


@pytest.mark.parametrize("head_dim", [8, 12, 16, 32, 64, 128])
@pytest.mark.parametrize("heads,kv", [(4, 2), (6, 6), (4, 1)])
def test_native_step_matches_torch(head_dim, heads, kv):
    """Every specialised head size (and the generic loop, 12), GQA, MHA and MQA, with left
    padding: the C step gives torch's numbers."""
    m = random_model(
        llama_config(head_dim=head_dim, num_attention_heads=heads, num_key_value_heads=kv), seed=head_dim + heads
    )
    ids = random_ids((3, 10), seed=head_dim)
    native, fallback = native_vs_torch(m, ids, torch.tensor([0, 3, 7]), prefill=8)
    assert torch.allclose(native, fallback, atol=1e-4), (native - fallback).abs().max()


@pytest.mark.parametrize("label", ["torch's BLAS", "scipy-openblas32"])
def test_native_step_matches_torch_with_each_blas(monkeypatch, label):
    """torch's MKL (Fortran sgemm_) and PyPI's OpenBLAS (CBLAS): both interfaces give torch's numbers."""
    candidates = [c for c in native_kernels._candidates() if c[2] == label]
    assert candidates, f"{label} should be reachable in the project's environment"
    monkeypatch.setattr(native_kernels, "_candidates", lambda: iter(candidates))
    monkeypatch.setattr(native_kernels, "_native", False)  # not tried yet
    library = native_kernels.native_library()
    assert library is not None and library[1].source.startswith(label), library
    m = random_model(qwen2_config(), seed=5)
    native, fallback = native_vs_torch(m, random_ids((3, 9), seed=6), torch.tensor([0, 2, 1]), prefill=3)
    assert torch.allclose(native, fallback, atol=1e-5), (native - fallback).abs().max()
    monkeypatch.setattr(native_kernels, "_native", False)  # the next test picks again


def test_native_step_with_qkv_bias_matches_torch():
    m = random_model(qwen2_config(), seed=3)
    native, fallback = native_vs_torch(m, random_ids((2, 9), seed=4), torch.tensor([2, 0]), prefill=3)
    assert torch.allclose(native, fallback, atol=1e-5), (native - fallback).abs().max()


def test_native_step_multithreaded_matches_torch():
    # Long enough a context that the attention spreads rows over threads.
    m = random_model(
        llama_config(head_dim=64, num_attention_heads=8, num_key_value_heads=4, max_position_embeddings=128), seed=11
    )
    b, t = 8, 80
    assert native_kernels._threads(b * 8 * (t - 1) * 64) == native_kernels._CORES
    native, fallback = native_vs_torch(m, random_ids((b, t), seed=12), torch.arange(b) * 3, prefill=t - 2)
    assert torch.allclose(native, fallback, atol=1e-4), (native - fallback).abs().max()


def test_native_decoder_applies_to_llama_shaped_fp32_cpu_models_only():
    assert native_kernels.native_decoder(random_model(llama_config(), seed=13)) is not None
    assert native_kernels.native_decoder(random_model(llama_config(), seed=13).double()) is None
    for departure in (
        dict(model_type="qwen3"),
        dict(model_type="mistral", sliding_window=4),
        dict(attention_bias=True),
        dict(model_type="gemma2", head_dim=8, query_pre_attn_scalar=8),
    ):
        model = random_model(llama_config(**departure), seed=13)
        assert not model.config.llama_shaped and native_kernels.native_decoder(model) is None, departure


def test_wide_models_sample_through_torch_unless_the_c_step_is_asked_for(monkeypatch):
    # Past NATIVE_MAX_HIDDEN torch's step is as fast, without the C step's copy of every projection:
    # "auto" leaves the model to it, decoder "native" still forces the C step; the samples agree.
    model = random_model(llama_config(), seed=13)
    assert native_kernels.native_decoder(model) is not None
    monkeypatch.setattr(native_kernels, "NATIVE_MAX_HIDDEN", model.config.hidden_size - 1)
    assert native_kernels.native_decoder(model) is None
    assert native_kernels.native_decoder(model, forced=True) is not None
    built = []

    class Counted(native_kernels.NativeDecoder):
        def __init__(self, *args):
            built.append(1)
            super().__init__(*args)

    monkeypatch.setattr(native_kernels, "NativeDecoder", Counted)
    prompts = [torch.tensor([5, 9, 3]), torch.tensor([7])]
    params = dict(n=2, max_new_tokens=6, temperature=0.9, top_p=1.0, top_k=0, stop_token_ids=(), seed=4)
    auto = sample(model, prompts, SampleParams(**params))
    assert built == []
    forced = sample(model, prompts, SampleParams(**params, decoder="native"))
    assert built == [1]
    assert auto.tokens.tolist() == forced.tokens.tolist()
    assert torch.allclose(auto.logprobs, forced.logprobs, atol=2e-5)


def test_the_native_decoder_refuses_a_model_it_cannot_run():
    model = random_model(llama_config(model_type="qwen3"), seed=13)
    params = SampleParams(
        n=1, max_new_tokens=2, temperature=0.0, top_p=1.0, top_k=0, stop_token_ids=(), seed=None, decoder="native"
    )
    with pytest.raises(ValueError, match="decoder: 'native' needs the C step, which does not apply"):
        sample(model, [torch.tensor([5, 9])], params)


def test_loading_the_native_step_keeps_subnormals():
    """The library must not switch the process to flush-to-zero (as a -ffast-math link does)."""
    assert native_kernels.native_library() is not None
    tiny = torch.tensor([1e-40], dtype=torch.float32)
    assert (tiny * 1.0).item() != 0.0 and (tiny + tiny).item() > 1e-40


def test_thinkcells_native_0_disables_the_native_step(monkeypatch):
    monkeypatch.setenv("THINKCELLS_NATIVE", "0")
    monkeypatch.setattr(native_kernels, "_native", False)  # not tried yet
    assert native_kernels.native_library() is None
    assert native_kernels.native_decoder(random_model(llama_config(), seed=13)) is None
    monkeypatch.setattr(native_kernels, "_native", False)  # the next test picks again


@torch.no_grad()
def greedy_chain(model, prompt, steps):
    """Greedy continuation by the independent reference forward (below), from the current weights."""
    seq = prompt.clone()
    for _ in range(steps):
        seq = torch.cat([seq, reference_llama_logits(model, seq[None])[0, -1].argmax()[None]])
    return seq[len(prompt) :].tolist()


GREEDY = SampleParams(n=1, max_new_tokens=8, temperature=0.0, top_p=1.0, top_k=0, stop_token_ids=(), seed=None)


def test_sampling_sees_every_kind_of_weight_update():
    """Sampling fuses projections; weight changes between (or before) samples must be seen
    however they are made: in place, through .data, by load_state_dict or by a dtype cast."""
    m = random_model(qwen2_config(), seed=3)
    prompt = random_ids((5,), seed=14)
    seen = [tuple(sample(m, [prompt], GREEDY).tokens[0].tolist())]
    assert list(seen[0]) == greedy_chain(m, prompt, 8)
    layer = m.model.layers[1]
    updates = [
        lambda: layer.self_attn.q_proj.weight.add_(1.0),
        lambda: layer.self_attn.v_proj.bias.mul_(-3.0),
        lambda: layer.mlp.up_proj.weight.data.mul_(-2.0),
        lambda: m.load_state_dict(random_model(qwen2_config(), seed=4).state_dict()),
        lambda: m.double(),
    ]
    for update in updates:
        with torch.no_grad():
            update()
        result = sample(m, [prompt], GREEDY)
        assert result.tokens[0].tolist() == greedy_chain(m, prompt, 8)
        seen.append(tuple(result.tokens[0].tolist()))
    assert len(set(seen)) >= 4  # the updates really changed what gets sampled


# -- ModelConfig.from_hf ---------------------------------------------------------------------


def test_from_hf_unsupported_model_type():
    with pytest.raises(ModelConfigError) as info:
        ModelConfig.from_hf(llama_config(model_type="gpt2"), source="/models/x/config.json")
    msg = str(info.value)
    assert msg.startswith("/models/x/config.json: ") and "'gpt2'" in msg
    assert all(name in msg for name in ("llama", "mistral", "qwen2"))
    config = llama_config()
    del config["model_type"]
    with pytest.raises(ModelConfigError, match="model_type None is not supported"):
        ModelConfig.from_hf(config)


@pytest.mark.parametrize(
    "field", ["vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads"]
)
def test_from_hf_missing_field(field):
    config = llama_config()
    del config[field]
    with pytest.raises(ModelConfigError) as info:
        ModelConfig.from_hf(config, source="m/config.json")
    assert str(info.value) == f"m/config.json: field {field!r} is missing"


def test_from_hf_defaults():
    config = llama_config()
    for key in (
        "num_key_value_heads",
        "max_position_embeddings",
        "rms_norm_eps",
        "rope_theta",
        "tie_word_embeddings",
        "eos_token_id",
    ):
        del config[key]
    c = ModelConfig.from_hf(config)
    assert (c.num_key_value_heads, c.head_dim, c.max_position_embeddings) == (4, 8, 2048)
    assert (c.rms_norm_eps, c.rope_theta, c.tie_word_embeddings, c.attention_bias) == (1e-6, 10000.0, False, False)
    assert c.eos_token_ids == () and c.bos_token_id == 1
    q = ModelConfig.from_hf(qwen2_config())
    assert q.attention_bias and not q.tie_word_embeddings and q.eos_token_ids == (2, 3)
    assert ModelConfig.from_hf(llama_config(attention_bias=True, eos_token_id=7)).attention_bias
    assert ModelConfig.from_hf(llama_config(eos_token_id=7)).eos_token_ids == (7,)


# -- an independent reference forward ----------------------------------------------------------


def reference_llama_logits(model, ids):
    """Textbook Llama in float64: rotate-half RoPE, repeat_interleave GQA, explicit causal softmax."""
    c = model.config
    sd = {k: v.double() for k, v in model.state_dict().items()}
    h, kv, d = c.num_attention_heads, c.num_key_value_heads, c.head_dim
    b, t = ids.shape

    def rms(x, w):
        return x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + c.rms_norm_eps) * w

    def linear(x, name):
        out = x @ sd[name + ".weight"].T
        return out + sd[name + ".bias"] if name + ".bias" in sd else out

    def rotate_half(x):
        return torch.cat([-x[..., d // 2 :], x[..., : d // 2]], dim=-1)

    inv_freq = 1.0 / c.rope_theta ** (torch.arange(0, d, 2, dtype=torch.float64) / d)
    angles = torch.arange(t, dtype=torch.float64)[:, None] * inv_freq[None, :]
    cos, sin = torch.cat([angles, angles], -1).cos(), torch.cat([angles, angles], -1).sin()
    causal = torch.tril(torch.ones(t, t, dtype=torch.bool))

    x = sd["model.embed_tokens.weight"][ids]
    for i in range(c.num_hidden_layers):
        p = f"model.layers.{i}."
        y = rms(x, sd[p + "input_layernorm.weight"])
        q = linear(y, p + "self_attn.q_proj").view(b, t, h, d).transpose(1, 2)
        k = linear(y, p + "self_attn.k_proj").view(b, t, kv, d).transpose(1, 2)
        v = linear(y, p + "self_attn.v_proj").view(b, t, kv, d).transpose(1, 2)
        q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
        k, v = k.repeat_interleave(h // kv, dim=1), v.repeat_interleave(h // kv, dim=1)
        scores = (q @ k.transpose(-1, -2)) / math.sqrt(d)
        probs = torch.softmax(scores.masked_fill(~causal, float("-inf")), dim=-1)
        x = x + linear((probs @ v).transpose(1, 2).reshape(b, t, h * d), p + "self_attn.o_proj")
        y = rms(x, sd[p + "post_attention_layernorm.weight"])
        x = x + linear(F.silu(linear(y, p + "mlp.gate_proj")) * linear(y, p + "mlp.up_proj"), p + "mlp.down_proj")
    x = rms(x, sd["model.norm.weight"])
    head = sd["lm_head.weight"] if "lm_head.weight" in sd else sd["model.embed_tokens.weight"]
    return x @ head.T


@pytest.mark.parametrize("grad", [False, True], ids=["no_grad", "grad"])
def test_matches_reference_llama(model, grad):
    ids = random_ids((2, 11), seed=13)
    expected = reference_llama_logits(model, ids)
    with torch.set_grad_enabled(grad):
        got = full_logits(model, ids).detach().double()
    assert expected.std() > 0.3  # the weights are not degenerate
    assert torch.allclose(got, expected, atol=1e-4), (got - expected).abs().max()
    assert torch.equal(got.argmax(-1), expected.argmax(-1))


def test_reference_sees_untied_head_and_bias():
    # Guard for the reference itself: the qwen2 model really has biases and its own head.
    m = random_model(qwen2_config())
    sd = m.state_dict()
    assert "lm_head.weight" in sd and "model.layers.0.self_attn.q_proj.bias" in sd
    assert not torch.equal(sd["lm_head.weight"], sd["model.embed_tokens.weight"])
    assert "model.layers.0.self_attn.o_proj.bias" not in sd
