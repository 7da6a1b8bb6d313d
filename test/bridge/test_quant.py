"""Quantized base weights (quant.py): the int8 and NF4 formats, and quantized models that
still forward, train LoRA, sample natively, save under Hugging Face names and take less memory."""

import contextlib
import copy
import sys
import warnings

import pytest
import torch
import torch.nn.functional as F
from bridge_wire import llama_config, perturb_adapters, qwen2_config, random_model
from test_model import full_logits, native_vs_torch, random_ids, reference_llama_logits
from test_training import CONFIG, batch
from thinkcells_bridge import native_kernels, quant
from thinkcells_bridge.hf_checkpoint import save_checkpoint
from thinkcells_bridge.loading import load_model
from thinkcells_bridge.lora import apply_lora, remove_lora
from thinkcells_bridge.model import CausalLM, ModelConfig
from thinkcells_bridge.optim import Trainer
from thinkcells_bridge.quant import (
    NF4_BLOCK,
    NF4_CODE,
    QuantizedLinear,
    QuantizedLoRALinear,
    dequantize_int8,
    dequantize_nf4,
    memory_bytes,
    quantization,
    quantize_base,
    quantize_int8,
    quantize_nf4,
)
from thinkcells_bridge.sampling import SampleParams, sample
from thinkcells_bridge.training import forward_backward

REALISTIC = llama_config(
    hidden_size=256,
    intermediate_size=512,
    num_attention_heads=4,
    num_key_value_heads=2,
    vocab_size=256,
    tie_word_embeddings=False,
)


def realistic_model(seed=0):
    """Weight scales as in trained LLMs: every matrix ~N(0, 0.02), norms at 1. Decoder layers
    then dominate the residual stream, so their quantization error shows in the logits."""
    torch.manual_seed(seed)
    m = CausalLM(ModelConfig.from_hf(REALISTIC))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in m.named_parameters():
            p.copy_(torch.ones(p.shape) if name.endswith("norm.weight") else torch.randn(p.shape, generator=g) * 0.02)
    return m.eval()


def quantized(m, scheme):
    q = copy.deepcopy(m)
    quantize_base(q, scheme)
    return q


def quantized_layers(m):
    return [layer for layer in m.modules() if isinstance(layer, QuantizedLinear)]


# -- the formats -----------------------------------------------------------------------------


def test_int8_round_trip_is_within_half_a_step_per_element():
    w = torch.randn(40, 70, generator=torch.Generator().manual_seed(0)) * torch.logspace(-3, 1, 40)[:, None]
    w[5] = 0.0  # an all-zero row stays zero (no 0/0)
    codes, scales = quantize_int8(w)
    assert codes.dtype == torch.int8 and codes.shape == w.shape and scales.shape == (40,)
    assert int(codes.abs().max()) == 127 and codes.min() >= -127
    absmax = w.abs().amax(dim=1, keepdim=True)
    error = (dequantize_int8(codes, scales) - w).abs()
    assert (error <= absmax / 127 / 2 * (1 + 1e-5)).all(), (error / absmax).max()
    assert torch.equal(dequantize_int8(codes, scales)[5], torch.zeros(70))


def test_nf4_code_values_are_the_published_ones():
    # QLoRA (arXiv 2305.14314) appendix E, as in bitsandbytes.
    published = [
        -1.0,
        -0.6961928009986877,
        -0.5250730514526367,
        -0.39491748809814453,
        -0.28444138169288635,
        -0.18477343022823334,
        -0.09105003625154495,
        0.0,
        0.07958029955625534,
        0.16093020141124725,
        0.24611230194568634,
        0.33791524171829224,
        0.44070982933044434,
        0.5626170039176941,
        0.7229568362236023,
        1.0,
    ]
    assert list(NF4_CODE) == published
    # And their construction: quantiles of N(0, 1), 8 positive and 7 negative ones plus an
    # exact zero, from offset ½(1/30 + 1/32) off the tails, scaled into [-1, 1].
    normal = torch.distributions.Normal(torch.tensor(0.0, dtype=torch.float64), torch.tensor(1.0, dtype=torch.float64))
    offset = 1 - 0.5 * (1 / 30 + 1 / 32)
    positive = normal.icdf(torch.linspace(offset, 0.5, 9, dtype=torch.float64)[:-1])
    negative = -normal.icdf(torch.linspace(offset, 0.5, 8, dtype=torch.float64)[:-1])
    values = torch.cat([positive, torch.zeros(1, dtype=torch.float64), negative]).sort().values
    assert torch.allclose(values / values.max(), torch.tensor(published, dtype=torch.float64), atol=1e-6)


def test_nf4_by_hand_on_one_block():
    w = torch.zeros(2, 32)  # 64 values: one block, running across the two rows
    w[0, :6] = torch.tensor([-2.0, 1.0, 0.2, 0.0, 2.0, -0.5])
    w[1, 31] = 0.3
    packed, absmax = quantize_nf4(w)
    assert absmax.tolist() == [2.0] and packed.dtype == torch.uint8 and packed.shape == (32,)
    # /2 → -1, 0.5, 0.1, 0, 1, -0.25: nearest codes 0 (-1), 12 (0.4407), 8 (0.0796), 7 (0),
    # 15 (1), 4 (-0.2844); zeros are code 7; 0.15 → 9 (0.1609). First of a pair: high nibble.
    assert packed[:3].tolist() == [0x0C, 0x87, 0xF4]
    assert packed[3:31].tolist() == [0x77] * 28 and packed[31] == 0x79
    got = dequantize_nf4(packed, absmax, (2, 32))
    c = NF4_CODE
    assert torch.allclose(got[0, :6], 2 * torch.tensor([c[0], c[12], c[8], c[7], c[15], c[4]]))
    assert torch.allclose(got[1, 31], torch.tensor(2 * c[9]))


def test_nf4_pads_the_last_block_and_stays_within_half_the_widest_gap():
    w = torch.randn(3, 30, generator=torch.Generator().manual_seed(1))  # 90 values: 2 blocks
    packed, absmax = quantize_nf4(w)
    assert packed.shape == (64,) and absmax.shape == (2,)
    got = dequantize_nf4(packed, absmax, (3, 30))
    per_value_absmax = absmax.repeat_interleave(64)[:90].view(3, 30)
    widest_gap = max(b - a for a, b in zip(NF4_CODE, NF4_CODE[1:]))
    assert ((got - w).abs() <= per_value_absmax * widest_gap / 2 + 1e-6).all()


# -- quantized models --------------------------------------------------------------------------


@pytest.mark.parametrize("scheme,min_cosine", [("int8", 0.999), ("nf4", 0.95)])
def test_quantized_logits_stay_close_to_full_precision(scheme, min_cosine):
    m = realistic_model()
    ids = random_ids((2, 16), seed=1, vocab=256)
    q = quantized(m, scheme)
    assert len(quantized_layers(q)) == 7 * m.config.num_hidden_layers
    assert "weight" in q.lm_head._parameters and "weight" in q.model.embed_tokens._parameters  # left as they were
    with torch.no_grad():
        expected, got = full_logits(m, ids), full_logits(q, ids)
        # The measure discriminates: other decoder weights give unrelated logits.
        other = realistic_model(seed=5)
        other.model.embed_tokens.load_state_dict(m.model.embed_tokens.state_dict())
        other.lm_head.load_state_dict(m.lm_head.state_dict())
        unrelated = full_logits(other, ids)
    assert F.cosine_similarity(unrelated, expected, dim=-1).max() < 0.5
    assert F.cosine_similarity(got, expected, dim=-1).min() > min_cosine
    assert not torch.equal(got, expected)


@pytest.mark.parametrize("scheme", quant.SCHEMES)
def test_state_dict_holds_dequantized_weights_under_hugging_face_names(scheme, tmp_path):
    m = random_model(qwen2_config(), seed=2)
    q = quantized(m, scheme)
    sd = q.state_dict()
    assert list(sd) == list(m.state_dict())  # same names, same order, nothing else
    layer = q.model.layers[0].self_attn.q_proj
    assert torch.equal(sd["model.layers.0.self_attn.q_proj.weight"], layer.weight)
    assert torch.equal(sd["model.layers.0.self_attn.q_proj.bias"], layer.bias)
    # An independent float64 forward over the state dict reproduces the quantized model...
    ids = random_ids((2, 9), seed=3)
    with torch.no_grad():
        logits = full_logits(q, ids)
    assert torch.allclose(reference_llama_logits(q, ids).float(), logits, atol=1e-4)
    # ...and so does the checkpoint it saves, loaded as an ordinary model.
    save_checkpoint(tmp_path, qwen2_config(), sd)
    with torch.no_grad():
        assert torch.allclose(
            full_logits(load_model(str(tmp_path), torch.device("cpu"), torch.float32), ids), logits, atol=1e-5
        )
    # Loading weights into a quantized model quantizes them: its own come back unchanged.
    codes, scales = layer.codes.clone(), layer.scales.clone()
    q.load_state_dict(sd)
    assert torch.equal(layer.codes, codes) and torch.allclose(layer.scales, scales)
    q.load_state_dict(m.state_dict())
    assert torch.equal(layer.codes, quant._QUANTIZE[scheme](m.model.layers[0].self_attn.q_proj.weight)[0])
    with pytest.raises(RuntimeError, match="size mismatch for model.layers.0.self_attn.q_proj.weight"):
        q.load_state_dict({**sd, "model.layers.0.self_attn.q_proj.weight": torch.zeros(3, 3)})


@pytest.mark.parametrize("scheme", quant.SCHEMES)
def test_lora_trains_on_a_quantized_base(scheme):
    m = random_model(llama_config(), seed=4).eval()
    quantize_base(m, scheme)
    apply_lora(m, rank=4, alpha=8, dropout=0.0, targets="all-linear", seed=1)
    assert all(isinstance(layer, QuantizedLoRALinear) for layer in quantized_layers(m))
    storage = [(layer.codes.clone(), layer.scales.clone()) for layer in quantized_layers(m)]
    trainer = Trainer(m)
    assert {name.rsplit(".", 1)[1] for name, _ in trainer.params()} == {"lora_A", "lora_B"}
    losses = []
    for _ in range(6):
        losses.append(forward_backward(m, trainer, batch(seed=0))["loss"])  # one batch: its loss must fall
        for name, p in m.named_parameters():
            assert (p.grad is not None) == ("lora_" in name), name
        trainer.optim_step(CONFIG)
    assert losses[-1] < losses[0] - 0.1, losses
    for layer, (codes, scales) in zip(quantized_layers(m), storage):
        assert torch.equal(layer.codes, codes) and torch.equal(layer.scales, scales)


@pytest.mark.parametrize("scheme", quant.SCHEMES)
def test_adapter_gradients_equal_those_over_the_dequantized_weights(scheme):
    """The base's backward dequantizes again instead of keeping W: same gradients as an fp32
    model holding the dequantized weights, and no base-sized tensor saved for backward."""
    q = quantized(random_model(qwen2_config(), seed=5), scheme)
    twin = random_model(qwen2_config(), seed=5)
    twin.load_state_dict(q.state_dict())
    weight_shapes = {(layer.out_features, layer.in_features) for layer in quantized_layers(q)}
    grads, saved_shapes = [], []
    for m in (q, twin):
        apply_lora(m, rank=2, alpha=4, dropout=0.0, targets="all-linear", seed=3)
        perturb_adapters(m)
        shapes = set()

        def record(t, shapes=shapes):
            shapes.add(tuple(t.shape))
            return t

        with torch.autograd.graph.saved_tensors_hooks(record, lambda t: t):
            loss = full_logits(m, random_ids((2, 5), seed=6)).logsumexp(-1).mean()
        loss.backward()
        grads.append([p.grad for name, p in m.named_parameters() if "lora_" in name])
        saved_shapes.append(shapes)
    for a, b in zip(*grads):
        assert torch.allclose(a, b, atol=1e-5), (a - b).abs().max()
    assert saved_shapes[1] & weight_shapes  # the fp32 model keeps its weights for backward...
    assert not saved_shapes[0] & weight_shapes  # ...the quantized one none


@pytest.mark.parametrize("scheme", quant.SCHEMES)
def test_quantizing_after_lora_keeps_the_adapters(scheme):
    m = random_model(llama_config(), seed=7)
    apply_lora(m, rank=2, alpha=4, dropout=0.0, targets=["q_proj", "down_proj"])
    perturb_adapters(m)
    adapters = [p for name, p in m.named_parameters() if "lora_" in name]
    quantize_base(m, scheme)
    assert [p for name, p in m.named_parameters() if "lora_" in name] == adapters  # the same tensors
    assert sum(isinstance(layer, QuantizedLoRALinear) for layer in m.modules()) == 2 * m.config.num_hidden_layers
    assert len(quantized_layers(m)) == 7 * m.config.num_hidden_layers


def test_removing_lora_keeps_the_base_quantized_and_frozen():
    m = quantized(random_model(qwen2_config(), seed=8), "nf4")
    ids = random_ids((2, 6), seed=9)
    with torch.no_grad():
        before = full_logits(m, ids)
    codes = [layer.codes for layer in quantized_layers(m)]
    apply_lora(m, rank=2, alpha=4, dropout=0.0, targets="all-linear")
    remove_lora(m)
    layers = quantized_layers(m)
    assert all(type(layer) is QuantizedLinear for layer in layers)
    assert all(layer.codes is c for layer, c in zip(layers, codes))  # moved, never copied
    assert all(p.requires_grad for p in m.parameters())  # biases, norms, embeddings: full fine-tuning
    with torch.no_grad():
        assert torch.equal(full_logits(m, ids), before)


@pytest.mark.parametrize("scheme", quant.SCHEMES)
def test_sampling_natively_matches_torch_on_a_quantized_model(scheme, monkeypatch):
    assert native_kernels.native_library() is not None, "the native step should build on this machine"
    m = quantized(random_model(llama_config(head_dim=16), seed=10), scheme)
    apply_lora(m, rank=2, alpha=4, dropout=0.0, targets="all-linear")
    perturb_adapters(m)  # merged_weight adds them to the dequantized base
    ids = random_ids((3, 10), seed=11)
    pad = torch.tensor([0, 2, 5])
    native, fallback = native_vs_torch(m, ids, pad, prefill=6)
    assert torch.allclose(native, fallback, atol=1e-4), (native - fallback).abs().max()

    params = SampleParams(n=2, max_new_tokens=10, temperature=0.8, top_p=1.0, top_k=0, stop_token_ids=(), seed=3)
    prompts = [random_ids((4,), seed=12), random_ids((7,), seed=13)]
    native_steps = []
    original = native_kernels.NativeDecoder.step

    def spy(self, *args):
        native_steps.append(1)
        return original(self, *args)

    monkeypatch.setattr(native_kernels.NativeDecoder, "step", spy)
    with_native = sample(m, prompts, params).tokens
    assert native_steps  # the C step really ran
    monkeypatch.setattr(native_kernels, "native_library", lambda: None)
    assert torch.equal(sample(m, prompts, params).tokens, with_native)


def test_stored_base_weights_shrink_about_4x_int8_and_7x_nf4():
    m = realistic_model()
    full = memory_bytes(m)
    assert full == {"stored": full["fp32"], "fp32": 4 * sum(p.numel() for p in m.parameters())}
    base_fp32 = 4 * sum(layer.weight.numel() for name, layer in m.named_modules() if name.endswith(m.adapter_targets))
    ratios = {}
    for scheme in quant.SCHEMES:
        q = quantized(m, scheme)
        base = sum(t.numel() * t.element_size() for layer in quantized_layers(q) for t in (layer.codes, layer.scales))
        ratios[scheme] = base_fp32 / base
        report = memory_bytes(q)
        assert report["fp32"] == full["fp32"] and report["stored"] == full["stored"] - base_fp32 + base
    # int8: 8 bits + one fp32 scale per row of 256 or 512; nf4: 4 bits + one fp32 absmax per 64.
    assert 3.9 < ratios["int8"] <= 4 and 7.0 < ratios["nf4"] <= 8, ratios


def test_unknown_scheme_and_requantizing_are_refused():
    m = random_model(llama_config(), seed=14)
    with pytest.raises(ValueError, match="unknown quantization scheme 'int4'; expected one of int8, nf4"):
        quantize_base(m, "int4")
    assert quantization(m) is None
    quantize_base(m, "int8")
    assert quantization(m) == "int8"
    with pytest.raises(ValueError, match=r"already quantized \(int8\)"):
        quantize_base(m, "nf4")


# -- CUDA (skipped without it) -------------------------------------------------------------------


@pytest.mark.parametrize("scheme", quant.SCHEMES)
def test_bf16_quantized_lora_forward_backward(scheme):
    """bf16, as on GPUs: on CUDA when there is one, else on CPU (torch runs bf16 there too)."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    m = quantized(random_model(llama_config(), seed=15), scheme).to(device, torch.bfloat16)
    apply_lora(m, rank=2, alpha=4, dropout=0.0, targets="all-linear")
    ids = random_ids((2, 6), seed=16).to(device)
    full_logits(m, ids).float().logsumexp(-1).mean().backward()
    assert all(p.grad is not None for name, p in m.named_parameters() if "lora_" in name)
    assert quantized_layers(m)[0].weight.dtype == torch.bfloat16


# -- against bitsandbytes (its CPU backend; CUDA too where there is one) -------------------------

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
DTYPES = [torch.float32, torch.bfloat16, torch.float16]
# Whole blocks across rows (80 a row), whole rows of blocks, a last partial block, an odd count.
SHAPES = [(96, 80), (256, 128), (3, 30), (5, 13), (7,)]


@pytest.fixture(scope="module")
def bnb():
    """bitsandbytes.functional ([test] group), imported offline: on CPUs with AVX512-BF16 its
    import asks the Hugging Face Hub for a CPU matmul kernel through `kernels` (installed with
    transformers), which none of these checks use, so `kernels` is hidden while it loads."""
    kernels = sys.modules.get("kernels")
    sys.modules["kernels"] = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit's, from the torch.compile it sets up
            return pytest.importorskip(
                "bitsandbytes.functional", reason="bitsandbytes is not installed (the [test] group pins it)"
            )
    finally:
        if kernels is None:
            del sys.modules["kernels"]
        else:
            sys.modules["kernels"] = kernels


def nf4_weights(shape, dtype, device, seed=0):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(shape, generator=g)
    if len(shape) == 2:
        w *= torch.logspace(-2, 1, shape[0])[:, None]  # blocks of very different absmax
    if shape[0] >= 16:
        w[10:13] = 0.0  # rows of zeros: whole blocks of them
    return w.to(device, dtype)


@contextlib.contextmanager
def denormals_kept():
    """IEEE subnormals on this thread while inside. Loading the native decode step (built with
    -ffast-math: gcc links crtfastmath.o) sets flush-to-zero on the loading thread and the threads
    it starts after; bitsandbytes' CPU quantize_4bit then scales
    an all-zero block by 1 / clamp(0, min=1e-38), a subnormal flushed to 0: NaN, code 15, not
    the zero code 7 it writes otherwise (thinkcells' clamp is the smallest normal: 7 either way)."""
    flushed = torch.tensor([1e-39]).mul(1).item() == 0
    torch.set_flush_denormal(False)
    try:
        yield
    finally:
        torch.set_flush_denormal(flushed)


def bnb_quantize(bnb, w):
    """bitsandbytes' quantize_4bit as flat packed codes and absmax. Its codes are uint8 [⌈n/2⌉, 1]
    (thinkcells pads to whole blocks: 32 bytes each), its QuantState holds fp32 absmax."""
    with denormals_kept():
        packed, state = bnb.quantize_4bit(w, blocksize=NF4_BLOCK, quant_type="nf4")
    assert packed.dtype == torch.uint8 and packed.shape == ((w.numel() + 1) // 2, 1)
    assert (state.blocksize, state.quant_type, tuple(state.shape), state.dtype) == (
        NF4_BLOCK,
        "nf4",
        tuple(w.shape),
        w.dtype,
    )
    assert state.absmax.dtype == torch.float32 and state.absmax.shape == (-(-w.numel() // NF4_BLOCK),)
    assert state.code.tolist() == list(NF4_CODE)
    return packed.view(-1), state.absmax


def bnb_dequantize(bnb, packed, absmax, n, dtype):
    """bitsandbytes' dequantize_4bit of the first n values, read as one flat row: 0.50.2's AVX-512
    CPU kernel takes absmax per row (row · ⌊columns/64⌋ + column/64), wrong where a row is not
    whole blocks ((96, 80) comes out wrong); one row is. Eager: its fallback for an odd count
    is torch.compile'd, seconds per shape on CPU, the same code run."""
    state = bnb.QuantState(absmax=absmax.float(), shape=(n,), dtype=dtype, blocksize=NF4_BLOCK, quant_type="nf4")
    with torch.compiler.set_stance("force_eager"):
        return bnb.dequantize_4bit(packed[: (n + 1) // 2].reshape(-1, 1), state).reshape(-1)


def zero_blocks(absmax, nbytes):
    """Per packed byte: whether its block is all zeros."""
    return (absmax == 0).repeat_interleave(NF4_BLOCK // 2)[:nbytes]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_nf4_codes_and_absmax_equal_bitsandbytes(bnb, shape, dtype, device):
    w = nf4_weights(shape, dtype, device)
    packed, absmax = quantize_nf4(w)
    theirs, their_absmax = bnb_quantize(bnb, w)
    nbytes = theirs.numel()
    # thinkcells keeps absmax in the weight's dtype: the largest |w| of a block is one of its values.
    assert absmax.dtype == dtype and torch.equal(absmax.float(), their_absmax)
    assert torch.equal(packed[nbytes:], torch.full_like(packed[nbytes:], 0x77))  # padding: zeros
    same = packed[:nbytes] == theirs
    if device == "cuda":
        # bitsandbytes' CUDA kernel scales an all-zero block by 1/0 = inf: its codes there are
        # not the zero code (its CPU backend writes 7, as thinkcells does). Both dequantize to 0.
        same |= zero_blocks(absmax, nbytes)
    assert same.all(), f"{int((~same).sum())} of {nbytes} bytes differ"
    if len(shape) == 2 and shape[0] >= 16:
        assert zero_blocks(absmax, nbytes).any()  # the zero rows made whole zero blocks


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_nf4_dequantization_equals_bitsandbytes_both_ways(bnb, shape, dtype, device, monkeypatch):
    w = nf4_weights(shape, dtype, device, seed=1)
    n = w.numel()
    packed, absmax = quantize_nf4(w)
    theirs, their_absmax = bnb_quantize(bnb, w)
    their_own = bnb_dequantize(bnb, theirs, their_absmax, n, dtype)
    theirs_of_ours = bnb_dequantize(bnb, packed, absmax, n, dtype)
    if device == "cuda":  # quant.py's own CUDA path is bitsandbytes' kernel on the same bytes
        assert quant._bitsandbytes() is not None
        assert torch.equal(dequantize_nf4(packed, absmax, shape).view(-1), theirs_of_ours)
    monkeypatch.setattr(quant, "_bitsandbytes", lambda: None)  # thinkcells' plain PyTorch path
    ours_own = dequantize_nf4(packed, absmax, shape)
    # bitsandbytes' codes, padded to whole blocks, and its fp32 absmax in the weight's dtype.
    ours_of_theirs = dequantize_nf4(F.pad(theirs, (0, packed.numel() - theirs.numel())), their_absmax.to(dtype), shape)
    assert ours_own.shape == ours_of_theirs.shape == shape and ours_own.dtype == dtype
    assert their_own.dtype == theirs_of_ours.dtype == dtype
    if dtype == torch.float32:
        assert torch.equal(ours_own.view(-1), theirs_of_ours) and torch.equal(ours_of_theirs.view(-1), their_own)
    else:
        # bitsandbytes rounds code · absmax once, from fp32; thinkcells multiplies in the weight's
        # dtype, the code value already rounded to it: at most one rounding apart (bf16: ~1 in 5).
        eps = torch.finfo(dtype).eps
        for ours, bnbs in ((ours_own.view(-1), theirs_of_ours), (ours_of_theirs.view(-1), their_own)):
            assert ((ours.float() - bnbs.float()).abs() <= bnbs.float().abs() * eps).all()


def nf4_midpoints(device="cpu"):
    code = torch.tensor(NF4_CODE, device=device)
    return (code[1:] + code[:-1]) / 2


@pytest.mark.parametrize("device", DEVICES)
def test_nf4_breaks_ties_as_bitsandbytes(bnb, device):
    mids = nf4_midpoints(device)
    # Exactly between two codes (absmax 1): the lower code, as bitsandbytes' `x > midpoint`.
    w = torch.zeros(64, device=device)
    w[0], w[1:16], w[16:31] = 1.0, mids, -mids
    packed, _ = quantize_nf4(w)
    codes = torch.stack((packed >> 4, packed & 15), dim=1).view(-1)
    assert codes[1:16].tolist() == list(range(15)) and codes[16:31].tolist() == list(range(14, -1, -1))
    assert torch.equal(packed, bnb_quantize(bnb, w)[0])
    # A rounding away from a midpoint, where x / absmax and x · (1 / absmax) fall on different
    # sides: bitsandbytes multiplies by the reciprocal (its CUDA kernel, and its CPU backend in
    # whole blocks; in a last, partial block the CPU backend divides), thinkcells too. One block
    # each: [absmax, x, 0, ...].
    cases = []
    for a in torch.linspace(0.3, 3.7, 60, device=device):
        x = mids * a
        for step in range(4):
            for side in (-1.0, 1.0):
                nudged = x
                for _ in range(step):
                    nudged = torch.nextafter(nudged, torch.full_like(x, side * float("inf")))
                flips = torch.bucketize(nudged / a, mids) != torch.bucketize(nudged * (1 / a), mids)
                cases += [(a, v) for v in nudged[flips]]
    assert len(cases) >= 20, len(cases)  # the check discriminates
    w = torch.zeros(len(cases), 64, device=device)
    w[:, 0] = torch.stack([a for a, _ in cases])
    w[:, 1] = torch.stack([v for _, v in cases])
    packed, _ = quantize_nf4(w)
    assert torch.equal(packed, bnb_quantize(bnb, w)[0])
    divided = torch.bucketize(w[:, 1] / w[:, 0], mids)
    assert (packed.view(-1, 32)[:, 0] & 15 != divided).all()
