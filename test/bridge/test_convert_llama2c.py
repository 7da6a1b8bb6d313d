import math
import pathlib
import struct

import numpy as np
import pytest
import torch
from thinkcells_bridge.convert_llama2c import Llama2cError, convert_llama2c_weights, write_llama2c_as_hf
from thinkcells_bridge.hf_checkpoint import load_state_dict, read_config

REPO = pathlib.Path(__file__).resolve().parents[2]
FIXTURES = REPO / "assets" / "stories260K"
BIN = FIXTURES / "stories260K.bin"
DIM, HIDDEN, LAYERS, HEADS, KV_HEADS, VOCAB, SEQ = 64, 172, 5, 8, 4, 512, 512
HEAD = DIM // HEADS


@pytest.fixture(scope="module")
def converted():
    return convert_llama2c_weights(BIN)


def raw_floats():
    """The file's weights as a flat fp32 array, read independently of the converter."""
    return np.fromfile(BIN, dtype="<f4", offset=28)


def test_config(converted):
    config, sd = converted
    assert config["hidden_size"] == DIM and config["intermediate_size"] == HIDDEN
    assert config["num_hidden_layers"] == LAYERS
    assert config["num_attention_heads"] == HEADS and config["num_key_value_heads"] == KV_HEADS
    assert config["vocab_size"] == VOCAB and config["max_position_embeddings"] == SEQ
    assert config["tie_word_embeddings"] is True and "lm_head.weight" not in sd
    assert config["rms_norm_eps"] == 1e-5 and config["rope_theta"] == 10000.0
    assert config["architectures"] == ["LlamaForCausalLM"] and config["model_type"] == "llama"
    assert len(sd) == 2 + 9 * LAYERS
    assert sd["model.layers.4.self_attn.k_proj.weight"].shape == (HEAD * KV_HEADS, DIM)
    assert sd["model.layers.0.mlp.down_proj.weight"].shape == (DIM, HIDDEN)
    assert all(t.dtype == torch.float32 for t in sd.values())


def test_unpermuted_weights_match_file(converted):
    _, sd = converted
    raw = raw_floats()
    assert np.array_equal(sd["model.embed_tokens.weight"].numpy().ravel(), raw[: VOCAB * DIM])
    # wv of layer 0 starts after embed, rms_att and all layers' wq and wk.
    start = VOCAB * DIM + LAYERS * DIM + LAYERS * DIM * DIM + LAYERS * HEAD * KV_HEADS * DIM
    wv0 = raw[start : start + HEAD * KV_HEADS * DIM]
    assert np.array_equal(sd["model.layers.0.self_attn.v_proj.weight"].numpy().ravel(), wv0)


def rope_llama2c(v, pos):
    """llama2.c run.c: rotate adjacent pairs (2i, 2i+1) within each head."""
    out = v.clone()
    for i in range(0, v.numel(), 2):
        angle = pos / 10000.0 ** ((i % HEAD) / HEAD)
        c, s = math.cos(angle), math.sin(angle)
        out[i], out[i + 1] = v[i] * c - v[i + 1] * s, v[i] * s + v[i + 1] * c
    return out


def rope_hf(v, pos):
    """Hugging Face Llama: x * cos + rotate_half(x) * sin, per head."""
    x = v.view(-1, HEAD)
    inv_freq = 1.0 / 10000.0 ** (torch.arange(0, HEAD, 2, dtype=torch.float64) / HEAD)
    emb = torch.cat([pos * inv_freq, pos * inv_freq])
    rotated = torch.cat([-x[:, HEAD // 2 :], x[:, : HEAD // 2]], dim=1)
    return (x * emb.cos() + rotated * emb.sin()).reshape(-1)


@pytest.mark.parametrize("layer", [0, 3])
def test_rope_permutation(converted, layer):
    _, sd = converted
    raw = torch.from_numpy(raw_floats()).double()
    wq_start = VOCAB * DIM + LAYERS * DIM
    wk_start = wq_start + LAYERS * DIM * DIM
    kv = HEAD * KV_HEADS
    wq = raw[wq_start + layer * DIM * DIM :][: DIM * DIM].view(DIM, DIM)
    wk = raw[wk_start + layer * kv * DIM :][: kv * DIM].view(kv, DIM)
    hf_q = sd[f"model.layers.{layer}.self_attn.q_proj.weight"].double()
    hf_k = sd[f"model.layers.{layer}.self_attn.k_proj.weight"].double()

    x = torch.randn(DIM, generator=torch.Generator().manual_seed(layer), dtype=torch.float64)
    for w, hf_w, pos in [(wq, hf_q, 5), (wk, hf_k, 11)]:
        ours = rope_hf(hf_w @ x, pos).view(-1, 2, HEAD // 2)
        # The HF result is llama2.c's with each head's (even, odd) elements split into halves.
        theirs = rope_llama2c(w @ x, pos).view(-1, HEAD // 2, 2).transpose(1, 2)
        assert torch.allclose(ours, theirs, atol=1e-12)

    # Attention scores are unchanged (query head h uses kv head h // 2 under GQA).
    q_old, k_old = rope_llama2c(wq @ x, 5).view(HEADS, HEAD), rope_llama2c(wk @ x, 11).view(KV_HEADS, HEAD)
    q_new, k_new = rope_hf(hf_q @ x, 5).view(HEADS, HEAD), rope_hf(hf_k @ x, 11).view(KV_HEADS, HEAD)
    group = HEADS // KV_HEADS
    scores_old = (q_old * k_old.repeat_interleave(group, 0)).sum(1)
    scores_new = (q_new * k_new.repeat_interleave(group, 0)).sum(1)
    assert torch.allclose(scores_old, scores_new, atol=1e-12)


def test_truncated_file(tmp_path):
    data = BIN.read_bytes()
    short = tmp_path / "short.bin"
    short.write_bytes(data[:-100])
    with pytest.raises(Llama2cError) as info:
        convert_llama2c_weights(short)
    msg = str(info.value)
    assert str(short) in msg and str(len(data)) in msg and str(len(data) - 100) in msg


def test_untied_classifier(tmp_path):
    dim, hidden, layers, heads, kv_heads, vocab, seq = 8, 12, 1, 2, 1, 10, 4
    head = dim // heads
    n = (
        vocab * dim
        + layers * (2 * dim + 2 * dim * dim + 2 * head * kv_heads * dim + 3 * hidden * dim)
        + dim
        + seq * head
    )
    weights = np.random.default_rng(0).standard_normal(n, dtype=np.float32)
    wcls = np.arange(vocab * dim, dtype=np.float32)
    path = tmp_path / "untied.bin"
    path.write_bytes(
        struct.pack("<7i", dim, hidden, layers, heads, kv_heads, -vocab, seq) + weights.tobytes() + wcls.tobytes()
    )
    config, sd = convert_llama2c_weights(path)
    assert config["tie_word_embeddings"] is False and config["vocab_size"] == vocab
    assert np.array_equal(sd["lm_head.weight"].numpy().ravel(), wcls)
    assert np.array_equal(sd["model.norm.weight"].numpy(), weights[n - seq * head - dim : n - seq * head])


def load_vocab():
    """llama2.c tokenizer: int32 max_token_length, then (f32 score, i32 len, bytes) per token."""
    blob = (FIXTURES / "tok512.bin").read_bytes()
    pos, pieces = 4, []
    for _ in range(VOCAB):
        _, n = struct.unpack_from("<fi", blob, pos)
        pieces.append(blob[pos + 8 : pos + 8 + n])
        pos += 8 + n
    return pieces


def greedy_hf_llama(config, sd, steps):
    """A minimal Hugging Face-layout Llama forward (rotate_half RoPE, GQA, tied
    head), decoding greedily from BOS like llama2.c's run.c."""
    n_heads, n_kv = config["num_attention_heads"], config["num_key_value_heads"]
    head = config["hidden_size"] // n_heads
    eps = config["rms_norm_eps"]
    inv_freq = 1.0 / config["rope_theta"] ** (torch.arange(0, head, 2, dtype=torch.float32) / head)

    def norm(x, w):
        return x * torch.rsqrt(x.pow(2).mean() + eps) * w

    def rope(v, pos):
        x = v.view(-1, head)
        emb = torch.cat([pos * inv_freq, pos * inv_freq])
        return x * emb.cos() + torch.cat([-x[:, head // 2 :], x[:, : head // 2]], 1) * emb.sin()

    emb_w = sd["model.embed_tokens.weight"]
    cache = [([], []) for _ in range(config["num_hidden_layers"])]
    token, out = 1, []
    for pos in range(steps):  # run.c: one forward and one printed token per step
        x = emb_w[token].clone()
        for i, (ks, vs) in enumerate(cache):
            p = f"model.layers.{i}."
            h = norm(x, sd[p + "input_layernorm.weight"])
            q = rope(sd[p + "self_attn.q_proj.weight"] @ h, pos)
            ks.append(rope(sd[p + "self_attn.k_proj.weight"] @ h, pos))
            vs.append((sd[p + "self_attn.v_proj.weight"] @ h).view(n_kv, head))
            k = torch.stack(ks).repeat_interleave(n_heads // n_kv, 1)  # (t, heads, head)
            v = torch.stack(vs).repeat_interleave(n_heads // n_kv, 1)
            att = torch.softmax(torch.einsum("hd,thd->ht", q, k) / math.sqrt(head), dim=1)
            x = x + sd[p + "self_attn.o_proj.weight"] @ torch.einsum("ht,thd->hd", att, v).reshape(-1)
            h = norm(x, sd[p + "post_attention_layernorm.weight"])
            gate = torch.nn.functional.silu(sd[p + "mlp.gate_proj.weight"] @ h)
            x = x + sd[p + "mlp.down_proj.weight"] @ (gate * (sd[p + "mlp.up_proj.weight"] @ h))
        token = int(torch.argmax(emb_w @ norm(x, sd["model.norm.weight"])))
        if token == 1:
            break
        out.append(token)
    return out


def test_converted_directory_decodes_like_llama2c(tmp_path):
    write_llama2c_as_hf(BIN, tmp_path / "hf", max_shard_bytes=300_000)
    config, sd = read_config(tmp_path / "hf"), load_state_dict(tmp_path / "hf")
    pieces = load_vocab()
    text, prev = b"", 1
    for token in greedy_hf_llama(config, sd, steps=200):
        piece = pieces[token]
        if prev == 1 and piece.startswith(b" "):  # run.c strips the space after BOS
            piece = piece[1:]
        if piece.startswith(b"<0x") and piece.endswith(b">") and len(piece) == 6:
            piece = bytes([int(piece[3:5], 16)])
        text, prev = text + piece, token
    expected = (REPO / "test" / "fixtures" / "llama2c-stories260K-greedy-200.txt").read_text()
    assert text.decode("utf-8").strip() == expected.strip()
