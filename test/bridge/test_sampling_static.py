"""The fixed-shape decode step (static_decode) against the growing-cache path it stands in for:
the same samples for Llama, biases, q/k norms, sliding windows, Gemma 2's soft-caps and Gemma 3's
two RoPE tables; every step the same tensor shapes and no read back to the host; and a trace by
torch.compile without graph breaks, which is what CUDA graphs or compilation build on."""

import pytest
import torch
from bridge_wire import llama_config, qwen2_config, random_model
from thinkcells_bridge.sampling import SampleParams, left_pad, sample
from thinkcells_bridge.static_decode import decode_step, slot_mask
from torch.utils._python_dispatch import TorchDispatchMode

GEMMA = dict(head_dim=8, query_pre_attn_scalar=8, sliding_window=4)
CONFIGS = {
    "llama": llama_config(),
    "qwen2": qwen2_config(),  # q/k/v biases, untied head
    "qwen3": llama_config(model_type="qwen3", head_dim=8),  # q/k norms
    "mistral": llama_config(model_type="mistral", sliding_window=4),  # every layer sliding
    "gemma2": llama_config(
        model_type="gemma2",
        attn_logit_softcapping=50.0,
        final_logit_softcapping=30.0,
        hidden_activation="gelu",
        **GEMMA,
    ),
    "gemma3_text": llama_config(
        model_type="gemma3_text",
        layer_types=["sliding_attention", "full_attention"],
        rope_local_base_freq=10000.0,
        **GEMMA,
    ),
    # Frequencies that depend on the length, past max_position_embeddings (64) here.
    "llama_dynamic_ntk": llama_config(rope_scaling={"rope_type": "dynamic", "factor": 2.0}),
}


@pytest.fixture(scope="module", params=list(CONFIGS))
def model(request):
    return random_model(CONFIGS[request.param], seed=31)


def prompts():
    # Left-padded to 7, longer than the sliding windows (4) once decoding starts.
    g = torch.Generator().manual_seed(6)
    return [torch.randint(3, 97, (n,), generator=g) for n in (4, 7, 1)]


def params(**overrides):
    base = dict(n=2, max_new_tokens=12, temperature=0.0, top_p=1.0, top_k=0, stop_token_ids=(), seed=None)
    base.update(overrides)
    return SampleParams(**base)


@pytest.mark.parametrize("temperature,seed,top_k", [(0.0, None, 0), (0.8, 5, 20)])
def test_static_steps_sample_as_the_growing_cache(model, temperature, seed, top_k):
    new_tokens = 60 if model.config.rope_scaling is not None else 12  # past the context: dynamic NTK moves
    p = dict(temperature=temperature, seed=seed, top_k=top_k, max_new_tokens=new_tokens)
    static = sample(model, prompts(), params(**p, decoder="static"))
    growing = sample(model, prompts(), params(**p, decoder="hidden_states"))
    automatic = sample(model, prompts(), params(**p))  # the C step for Llama-shaped models where it builds
    for other in (growing, automatic):
        assert static.tokens.tolist() == other.tokens.tolist()
        assert torch.allclose(static.logprobs, other.logprobs, atol=2e-5)


def prefilled(model, capacity=20):
    ids, pad = left_pad(prompts(), "cpu")
    positions = (torch.arange(ids.shape[1])[None, :] - pad[:, None]).clamp(min=0)
    cache = model.new_cache(pad, capacity, torch.float32)
    model.hidden_states(ids, positions, pad, cache)
    return cache, positions[:, -1:] + 1


@torch.inference_mode()
def test_static_step_returns_what_hidden_states_returns(model):
    static_cache, positions = prefilled(model)
    growing_cache, _ = prefilled(model)
    slot = torch.tensor([static_cache.length])
    for token in (5, 17, 40, 3, 88, 9, 61):
        ids = torch.full((3, 1), token)
        ours = decode_step(model, static_cache, ids, positions, slot)
        theirs = model.hidden_states(ids, positions, growing_cache.start, growing_cache)
        slot += 1
        static_cache.length += 1
        positions += 1
        assert ours.shape == theirs.shape == (3, 1, model.config.hidden_size)
        assert torch.allclose(ours, theirs, atol=1e-5)
    for a, b in zip(static_cache.k + static_cache.v, growing_cache.k + growing_cache.v):
        assert torch.allclose(a, b, atol=1e-5)


class OpLog(TorchDispatchMode):
    """Every aten op a step runs, with its output shapes."""

    def __init__(self):
        super().__init__()
        self.ops = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        outs = out if isinstance(out, (tuple, list)) else (out,)
        self.ops.append((str(func), tuple(tuple(o.shape) for o in outs if isinstance(o, torch.Tensor))))
        return out


# Ops that read a device value back to the host (a sync on an accelerator) or size a tensor by one.
HOST_READS = ("aten._local_scalar_dense", "aten.nonzero", "aten.item", "aten.masked_select", "aten.unique")


@torch.inference_mode()
def test_static_step_has_the_same_shapes_every_step_and_never_reads_back(model):
    cache, positions = prefilled(model)
    buffers = [t.data_ptr() for t in cache.k + cache.v]
    slot = torch.tensor([cache.length])
    logs = []
    for token in (5, 17, 40, 3):
        with OpLog() as log:
            decode_step(model, cache, torch.full((3, 1), token), positions, slot)
        slot += 1
        cache.length += 1
        positions += 1
        logs.append(log.ops)
    assert logs[0], "the step ran no ops"
    assert all(ops == logs[0] for ops in logs[1:]), "a step's ops or shapes changed"
    assert not [op for op, _ in logs[0] if op.startswith(HOST_READS)]
    assert [t.data_ptr() for t in cache.k + cache.v] == buffers  # written in place


def test_slot_mask_sees_the_filled_slots_after_the_padding_within_the_window():
    start, slot = torch.tensor([0, 2]), torch.tensor([5])
    allowed = slot_mask(start, slot, 8, torch.float32, None)[:, 0, 0] == 0
    assert allowed.tolist() == [[True] * 6 + [False] * 2, [False] * 2 + [True] * 4 + [False] * 2]
    windowed = slot_mask(start, slot, 8, torch.float32, 3)[:, 0, 0] == 0
    assert windowed.tolist() == [[False] * 3 + [True] * 3 + [False] * 2] * 2


def test_static_step_compiles_as_one_graph():
    """torch.compile's trace (dynamo, with the eager backend: no code generation) takes the
    whole step as one graph and reuses it as the slot advances."""
    import torch._dynamo

    m = random_model(CONFIGS["gemma3_text"], seed=31)
    torch._dynamo.reset()
    compiled = torch.compile(decode_step, backend="eager", fullgraph=True)
    with torch.inference_mode():
        cache, positions = prefilled(m)
        plain_cache, _ = prefilled(m)
        slot = torch.tensor([cache.length])
        with torch._dynamo.config.patch(error_on_recompile=True):
            for token in (5, 17, 40, 3):
                ids = torch.full((3, 1), token)
                ours = compiled(m, cache, ids, positions, slot)
                theirs = decode_step(m, plain_cache, ids, positions, slot)
                slot += 1
                cache.length += 1
                plain_cache.length += 1
                positions += 1
                assert torch.allclose(ours, theirs, atol=1e-6)


def test_decoder_is_checked():
    m = random_model(llama_config(), seed=1)
    with pytest.raises(ValueError, match="decoder: expected one of auto, native, static, hidden_states, got 'fast'"):
        sample(m, prompts(), params(decoder="fast"))
