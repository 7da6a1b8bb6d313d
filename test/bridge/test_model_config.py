"""config.json → ModelConfig for each native family: the defaults transformers' config classes
fill in, which layers slide, the two config styles (published, and transformers 5's), refusals.
The numerical equality with transformers is test_architectures.py's."""

import pytest
from thinkcells_bridge.model_config import FULL, SLIDING, ModelConfig, ModelConfigError, text_model_config

BODY = dict(
    vocab_size=64,
    hidden_size=32,
    intermediate_size=48,
    num_hidden_layers=6,
    num_attention_heads=4,
    num_key_value_heads=2,
)
S, F = SLIDING, FULL


def parse(**fields):
    return ModelConfig.from_hf({**BODY, **fields}, source="m/config.json")


def test_llama_attention_bias_covers_o_proj_and_mlp_bias_is_its_own():
    c = parse(model_type="llama", attention_bias=True, mlp_bias=True)
    assert (c.attention_bias, c.o_bias, c.mlp_bias) == (True, True, True)
    assert c.layer_types == (F,) * 6 and c.window(0) is None and not c.llama_shaped
    assert parse(model_type="llama").llama_shaped


def test_qwen2_has_qkv_bias_only_and_slides_only_with_use_sliding_window():
    c = parse(model_type="qwen2", sliding_window=8, max_window_layers=4)
    assert (c.attention_bias, c.o_bias) == (True, False)
    assert c.sliding_window is None and c.window(5) is None and c.llama_shaped
    slid = parse(model_type="qwen2", use_sliding_window=True, sliding_window=8, max_window_layers=4)
    assert slid.layer_types == (F, F, F, F, S, S) and slid.window(4) == 8 and slid.window(3) is None


def test_mistral_slides_every_layer_with_transformers_default_window():
    assert parse(model_type="mistral").window(0) == 4096  # MistralConfig's default
    assert parse(model_type="mistral", sliding_window=None).sliding_window is None  # v0.3 turns it off
    c = parse(model_type="mistral", sliding_window=16, attention_bias=True)
    assert c.layer_types == (S,) * 6 and not c.attention_bias  # Mistral's projections have no bias


def test_qwen3_norms_queries_and_keys_and_keeps_its_head_dim():
    c = parse(model_type="qwen3", head_dim=16)
    assert c.qk_norm and c.head_dim == 16 and c.hidden_size == 32 and not c.gemma
    assert parse(model_type="qwen3").head_dim == 128  # Qwen3Config's default, not hidden / heads


def test_gemma2_alternates_windows_and_soft_caps_by_default():
    c = parse(model_type="gemma2", head_dim=8, sliding_window=16)
    assert c.layer_types == (S, F, S, F, S, F)
    assert (c.attn_logit_softcapping, c.final_logit_softcapping) == (50.0, 30.0)
    assert c.attention_scale == 256**-0.5 and c.tie_word_embeddings and c.hidden_act == "gelu_pytorch_tanh"
    assert c.rope_kinds == (FULL,)
    off = parse(model_type="gemma2", head_dim=8, final_logit_softcapping=None, attn_logit_softcapping=None)
    assert off.final_logit_softcapping is None and off.attn_logit_softcapping is None


def test_gemma3_every_sixth_layer_is_global_with_its_own_rope_base():
    c = parse(
        model_type="gemma3_text",
        head_dim=8,
        sliding_window=16,
        rope_local_base_freq=500.0,
        rope_scaling={"rope_type": "linear", "factor": 8.0},
    )
    assert c.layer_types == (S, S, S, S, S, F)
    assert c.rope_for(SLIDING) == (500.0, None)
    theta, scaling = c.rope_for(FULL)
    assert theta == 1_000_000.0 and scaling.type == "linear" and scaling.factor == 8.0
    assert c.final_logit_softcapping is None and c.qk_norm and c.gemma and not c.llama_shaped


def test_gemma3_as_transformers_5_writes_it():
    c = parse(
        model_type="gemma3_text",
        head_dim=8,
        sliding_window=16,
        layer_types=[F, S, S, S, S, F],
        rope_parameters={
            FULL: {"rope_type": "linear", "factor": 4.0, "rope_theta": 2e5},
            SLIDING: {"rope_type": "default", "rope_theta": 700.0},
        },
    )
    assert c.layer_types == (F, S, S, S, S, F)
    assert c.rope_theta == 2e5 and c.rope_scaling.factor == 4.0 and c.local_rope_theta == 700.0


def test_multimodal_gemma3_reads_its_text_config_with_gemma3_text_defaults():
    # gemma-3-4b-it's config.json, its vision part cut short: the text block is sparse.
    published = {
        "architectures": ["Gemma3ForConditionalGeneration"],
        "model_type": "gemma3",
        "eos_token_id": [1, 106],
        "text_config": {
            "hidden_size": 2560,
            "intermediate_size": 10240,
            "model_type": "gemma3_text",
            "num_hidden_layers": 34,
            "rope_scaling": {"factor": 8.0, "rope_type": "linear"},
            "sliding_window": 1024,
        },
        "vision_config": {"model_type": "siglip_vision_model"},
    }
    c = ModelConfig.from_hf(published)
    assert c.model_type == "gemma3_text" and c.eos_token_ids == (1, 106) and c.bos_token_id == 2
    assert (c.vocab_size, c.num_attention_heads, c.num_key_value_heads, c.head_dim) == (262208, 8, 4, 256)
    assert c.layer_types[5] == F and c.window(0) == 1024
    text = text_model_config(published)
    assert (
        text["model_type"] == "gemma3_text"
        and text["architectures"] == ["Gemma3ForCausalLM"]
        and "vision_config" not in text
    )


@pytest.mark.parametrize(
    "fields, message",
    [
        (dict(model_type="gemma3_text", layer_types=[F, S]), "layer_types must list"),
        (dict(model_type="gemma2", sliding_window_pattern=0), "sliding_window_pattern is 0"),
        (dict(model_type="gemma3_text", hidden_activation="relu"), "hidden_activation is 'relu'"),
        (dict(model_type="llama", hidden_act="swish2"), "hidden_act is 'swish2'"),
        (dict(model_type="gemma3_text", use_bidirectional_attention=True), "use_bidirectional_attention"),
        (dict(model_type="gemma3", text_config=None), "needs a 'text_config' object"),
        (dict(model_type="gemma3", text_config={"model_type": "llama"}), "text_config.model_type is 'llama'"),
    ],
)
def test_bad_configs_are_refused_with_the_field_named(fields, message):
    with pytest.raises(ModelConfigError, match=message) as caught:
        parse(**fields)
    assert str(caught.value).startswith("m/config.json: ")


@pytest.mark.parametrize("prefix", ["model.language_model.", "language_model.model."])
def test_multimodal_weights_load_as_the_text_model(prefix):
    """transformers 5 saves model.language_model.*; the published files hold language_model.model.*."""
    import torch
    from thinkcells_bridge.loading import text_model_weights

    t = torch.zeros(1)
    weights = {
        f"{prefix}embed_tokens.weight": t,
        f"{prefix}layers.0.mlp.up_proj.weight": t,
        "model.vision_tower.vision_model.embeddings.patch_embedding.weight": t,
        "vision_tower.x": t,
        "multi_modal_projector.mm_input_projection_weight": t,
    }
    assert sorted(text_model_weights(weights)) == ["model.embed_tokens.weight", "model.layers.0.mlp.up_proj.weight"]
    plain = {"model.embed_tokens.weight": t}
    assert text_model_weights(plain) is plain
