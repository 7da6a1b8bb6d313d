"""Published config.json files of the model families the bridge runs natively, written out as
the Hub serves them (every field kept, even ones a loader ignores), and the one function that
shrinks such a config to a test-sized model by replacing size fields only.

Why verbatim: a config written by hand for a test tends to leave out what the test author did
not think of (a rope_scaling block, a sliding window, a softcap, q/k bias), and then the test
passes with that feature switched off. Scaling a real config keeps every such switch as
published.
"""

from __future__ import annotations

import copy
import math

# meta-llama/Llama-3.2-1B-Instruct
LLAMA_3_2_1B_INSTRUCT = {
    "architectures": ["LlamaForCausalLM"],
    "attention_bias": False,
    "attention_dropout": 0.0,
    "bos_token_id": 128000,
    "eos_token_id": [128001, 128008, 128009],
    "head_dim": 64,
    "hidden_act": "silu",
    "hidden_size": 2048,
    "initializer_range": 0.02,
    "intermediate_size": 8192,
    "max_position_embeddings": 131072,
    "mlp_bias": False,
    "model_type": "llama",
    "num_attention_heads": 32,
    "num_hidden_layers": 16,
    "num_key_value_heads": 8,
    "pretraining_tp": 1,
    "rms_norm_eps": 1e-05,
    "rope_scaling": {
        "factor": 32.0,
        "high_freq_factor": 4.0,
        "low_freq_factor": 1.0,
        "original_max_position_embeddings": 8192,
        "rope_type": "llama3",
    },
    "rope_theta": 500000.0,
    "tie_word_embeddings": True,
    "torch_dtype": "bfloat16",
    "transformers_version": "4.45.0.dev0",
    "use_cache": True,
    "vocab_size": 128256,
}

# mistralai/Mistral-7B-v0.1
MISTRAL_7B_V0_1 = {
    "architectures": ["MistralForCausalLM"],
    "bos_token_id": 1,
    "eos_token_id": 2,
    "hidden_act": "silu",
    "hidden_size": 4096,
    "initializer_range": 0.02,
    "intermediate_size": 14336,
    "max_position_embeddings": 32768,
    "model_type": "mistral",
    "num_attention_heads": 32,
    "num_hidden_layers": 32,
    "num_key_value_heads": 8,
    "rms_norm_eps": 1e-05,
    "rope_theta": 10000.0,
    "sliding_window": 4096,
    "tie_word_embeddings": False,
    "torch_dtype": "bfloat16",
    "transformers_version": "4.34.0.dev0",
    "use_cache": True,
    "vocab_size": 32000,
}

# Qwen/Qwen2.5-1.5B-Instruct
QWEN2_5_1_5B_INSTRUCT = {
    "architectures": ["Qwen2ForCausalLM"],
    "attention_dropout": 0.0,
    "bos_token_id": 151643,
    "eos_token_id": 151645,
    "hidden_act": "silu",
    "hidden_size": 1536,
    "initializer_range": 0.02,
    "intermediate_size": 8960,
    "max_position_embeddings": 32768,
    "max_window_layers": 21,
    "model_type": "qwen2",
    "num_attention_heads": 12,
    "num_hidden_layers": 28,
    "num_key_value_heads": 2,
    "rms_norm_eps": 1e-06,
    "rope_theta": 1000000.0,
    "sliding_window": 32768,
    "tie_word_embeddings": True,
    "torch_dtype": "bfloat16",
    "transformers_version": "4.43.1",
    "use_cache": True,
    "use_sliding_window": False,
    "vocab_size": 151936,
}

# Qwen/Qwen3-0.6B
QWEN3_0_6B = {
    "architectures": ["Qwen3ForCausalLM"],
    "attention_bias": False,
    "attention_dropout": 0.0,
    "bos_token_id": 151643,
    "eos_token_id": 151645,
    "head_dim": 128,
    "hidden_act": "silu",
    "hidden_size": 1024,
    "initializer_range": 0.02,
    "intermediate_size": 3072,
    "max_position_embeddings": 40960,
    "max_window_layers": 28,
    "model_type": "qwen3",
    "num_attention_heads": 16,
    "num_hidden_layers": 28,
    "num_key_value_heads": 8,
    "rms_norm_eps": 1e-06,
    "rope_scaling": None,
    "rope_theta": 1000000,
    "sliding_window": None,
    "tie_word_embeddings": True,
    "torch_dtype": "bfloat16",
    "transformers_version": "4.51.0",
    "use_cache": True,
    "use_sliding_window": False,
    "vocab_size": 151936,
}

# google/gemma-2-2b-it
GEMMA_2_2B_IT = {
    "architectures": ["Gemma2ForCausalLM"],
    "attention_bias": False,
    "attention_dropout": 0.0,
    "attn_logit_softcapping": 50.0,
    "bos_token_id": 2,
    "cache_implementation": "hybrid",
    "eos_token_id": [1, 107],
    "final_logit_softcapping": 30.0,
    "head_dim": 256,
    "hidden_act": "gelu_pytorch_tanh",
    "hidden_activation": "gelu_pytorch_tanh",
    "hidden_size": 2304,
    "initializer_range": 0.02,
    "intermediate_size": 9216,
    "max_position_embeddings": 8192,
    "model_type": "gemma2",
    "num_attention_heads": 8,
    "num_hidden_layers": 26,
    "num_key_value_heads": 4,
    "pad_token_id": 0,
    "query_pre_attn_scalar": 256,
    "rms_norm_eps": 1e-06,
    "rope_theta": 10000.0,
    "sliding_window": 4096,
    "torch_dtype": "float32",
    "transformers_version": "4.42.4",
    "use_cache": True,
    "vocab_size": 256000,
}

# google/gemma-2-27b-it: the one published Gemma whose query_pre_attn_scalar (144) is not its
# head_dim (128), so attention scaled by head_dim^-1/2 instead would show.
GEMMA_2_27B_IT = {
    "architectures": ["Gemma2ForCausalLM"],
    "attention_bias": False,
    "attention_dropout": 0.0,
    "attn_logit_softcapping": 50.0,
    "bos_token_id": 2,
    "cache_implementation": "hybrid",
    "eos_token_id": [1, 107],
    "final_logit_softcapping": 30.0,
    "head_dim": 128,
    "hidden_act": "gelu_pytorch_tanh",
    "hidden_activation": "gelu_pytorch_tanh",
    "hidden_size": 4608,
    "initializer_range": 0.02,
    "intermediate_size": 36864,
    "max_position_embeddings": 8192,
    "model_type": "gemma2",
    "num_attention_heads": 32,
    "num_hidden_layers": 46,
    "num_key_value_heads": 16,
    "pad_token_id": 0,
    "query_pre_attn_scalar": 144,
    "rms_norm_eps": 1e-06,
    "rope_theta": 10000.0,
    "sliding_window": 4096,
    "sliding_window_size": 4096,
    "torch_dtype": "bfloat16",
    "transformers_version": "4.42.0.dev0",
    "use_cache": True,
    "vocab_size": 256000,
}

# google/gemma-3-1b-it
GEMMA_3_1B_IT = {
    "architectures": ["Gemma3ForCausalLM"],
    "attention_bias": False,
    "attention_dropout": 0.0,
    "attn_logit_softcapping": None,
    "bos_token_id": 2,
    "cache_implementation": "hybrid",
    "eos_token_id": [1, 106],
    "final_logit_softcapping": None,
    "head_dim": 256,
    "hidden_activation": "gelu_pytorch_tanh",
    "hidden_size": 1152,
    "initializer_range": 0.02,
    "intermediate_size": 6912,
    "max_position_embeddings": 32768,
    "model_type": "gemma3_text",
    "num_attention_heads": 4,
    "num_hidden_layers": 26,
    "num_key_value_heads": 1,
    "pad_token_id": 0,
    "query_pre_attn_scalar": 256,
    "rms_norm_eps": 1e-06,
    "rope_local_base_freq": 10000,
    "rope_scaling": None,
    "rope_theta": 1000000,
    "sliding_window": 512,
    "sliding_window_pattern": 6,
    "torch_dtype": "bfloat16",
    "transformers_version": "4.50.0.dev0",
    "use_cache": True,
    "vocab_size": 262144,
}

# google/gemma-3-4b-it: Gemma3ForConditionalGeneration. Its text_config is sparse on the Hub:
# heads, head_dim, vocabulary and context length come from Gemma3TextConfig's defaults.
GEMMA_3_4B_IT = {
    "architectures": ["Gemma3ForConditionalGeneration"],
    "boi_token_index": 255999,
    "eoi_token_index": 256000,
    "eos_token_id": [1, 106],
    "image_token_index": 262144,
    "initializer_range": 0.02,
    "mm_tokens_per_image": 256,
    "model_type": "gemma3",
    "text_config": {
        "hidden_size": 2560,
        "intermediate_size": 10240,
        "model_type": "gemma3_text",
        "num_hidden_layers": 34,
        "rope_scaling": {"factor": 8.0, "rope_type": "linear"},
        "sliding_window": 1024,
    },
    "torch_dtype": "bfloat16",
    "transformers_version": "4.50.0.dev0",
    "vision_config": {
        "hidden_size": 1152,
        "image_size": 896,
        "intermediate_size": 4304,
        "model_type": "siglip_vision_model",
        "num_attention_heads": 16,
        "num_hidden_layers": 27,
        "patch_size": 14,
        "vision_use_head": False,
    },
}

PUBLISHED = {
    "llama": LLAMA_3_2_1B_INSTRUCT,
    "mistral": MISTRAL_7B_V0_1,
    "qwen2": QWEN2_5_1_5B_INSTRUCT,
    "qwen3": QWEN3_0_6B,
    "gemma2": GEMMA_2_2B_IT,
    "gemma2_27b": GEMMA_2_27B_IT,
    "gemma3_text": GEMMA_3_1B_IT,
    "gemma3": GEMMA_3_4B_IT,
}

# The test-sized model. Everything not named here keeps its published value.
SMALL_VOCAB = 512
SMALL_MAX_POSITIONS = 1024  # llama3 scaling: original 8192/131072 of it = 64, so all three frequency bands occur
SMALL_WINDOW = 8  # far below the test sequences' lengths, so the window masks something
SMALL_HEAD_DIM = 16  # where the published head_dim is hidden_size / heads (or derived from them)
SMALL_UNTIED_HEAD_DIM = 32  # where it is not: stays ≠ hidden_size / heads
SMALL_HIDDEN = 64  # with an independent head_dim
SMALL_INTERMEDIATE = 128
SMALL_KV_HEADS = 2
# At least one layer of each attention kind: Gemma 3 is 5 sliding then 1 global, repeating.
SMALL_LAYERS = {"gemma3_text": 7}
DEFAULT_SMALL_LAYERS = 2
SMALL_VISION = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_attention_heads": 2,
    "num_hidden_layers": 1,
    "image_size": 56,
}
SMALL_MM_TOKENS_PER_IMAGE = 4
# Token ids at or above the small vocabulary move to its top slots; test inputs stay below.
SPECIAL_TOKEN_FLOOR = SMALL_VOCAB - 16
TOKEN_ID_FIELDS = (
    "bos_token_id",
    "eos_token_id",
    "pad_token_id",
    "boi_token_index",
    "eoi_token_index",
    "image_token_index",
)

# Size fields a sparse published config may leave to transformers' defaults (gemma-3-4b-it's
# text_config): at full size those would build a full-vocabulary model, so they are written.
SIZE_FIELDS_FROM_DEFAULTS = (
    "vocab_size",
    "num_attention_heads",
    "num_key_value_heads",
    "head_dim",
    "max_position_embeddings",
    "query_pre_attn_scalar",
)


def _text_defaults(model_type: str) -> dict:
    """transformers' defaults for a text config: what a sparse published config means."""
    from transformers import AutoConfig

    return AutoConfig.for_model(model_type).to_dict()


def _map_token_ids(value, mapping: dict[int, int]):
    if isinstance(value, list):
        return [mapping.get(v, v) for v in value]
    return mapping.get(value, value) if isinstance(value, int) else value


def _large_token_ids(config: dict) -> list[int]:
    found = set()
    for key in TOKEN_ID_FIELDS:
        value = config.get(key)
        for v in value if isinstance(value, list) else [value]:
            if isinstance(v, int) and v >= SPECIAL_TOKEN_FLOOR:
                found.add(v)
    return sorted(found)


def _scale_text(published: dict, token_map: dict[int, int], sub_config: bool) -> dict:
    config = copy.deepcopy(published)
    real = {**_text_defaults(published["model_type"]), **published}  # the real model's sizes
    if sub_config:
        for key in SIZE_FIELDS_FROM_DEFAULTS:
            if key not in config and key in real:
                config[key] = real[key]

    heads, kv = real["num_attention_heads"], real.get("num_key_value_heads") or real["num_attention_heads"]
    small_kv = min(kv, SMALL_KV_HEADS)
    small_heads = small_kv * (heads // kv)  # the published grouped-query ratio
    independent_head_dim = real.get("head_dim") is not None and real["head_dim"] * heads != real["hidden_size"]
    if independent_head_dim:
        hidden, head_dim = SMALL_HIDDEN, SMALL_UNTIED_HEAD_DIM
        assert head_dim * small_heads != hidden
    else:
        hidden, head_dim = small_heads * SMALL_HEAD_DIM, SMALL_HEAD_DIM
    layers = SMALL_LAYERS.get(real["model_type"], DEFAULT_SMALL_LAYERS)

    sizes = {
        "vocab_size": SMALL_VOCAB,
        "hidden_size": hidden,
        "intermediate_size": SMALL_INTERMEDIATE,
        "num_hidden_layers": layers,
        "num_attention_heads": small_heads,
        "num_key_value_heads": small_kv,
        "head_dim": head_dim,
        "max_position_embeddings": SMALL_MAX_POSITIONS,
    }
    for key, value in sizes.items():
        if key in config:
            config[key] = value
    if config.get("sliding_window") is not None:
        # Scaled even where it is off (Qwen2.5: use_sliding_window false): a loader that
        # honoured it anyway would then disagree with transformers.
        config["sliding_window"] = SMALL_WINDOW
    if config.get("max_window_layers") is not None:
        # A count of layers: the same fraction of the smaller stack.
        config["max_window_layers"] = min(
            layers, math.ceil(real["max_window_layers"] * layers / real["num_hidden_layers"])
        )
    if config.get("query_pre_attn_scalar") is not None and real["query_pre_attn_scalar"] == real.get("head_dim"):
        config["query_pre_attn_scalar"] = head_dim  # 1/sqrt(head_dim) scaling, as published
    scaling = config.get("rope_scaling")
    if isinstance(scaling, dict) and "original_max_position_embeddings" in scaling:
        ratio = scaling["original_max_position_embeddings"] / real["max_position_embeddings"]
        scaling["original_max_position_embeddings"] = round(SMALL_MAX_POSITIONS * ratio)
    for key in TOKEN_ID_FIELDS:
        if key in config:
            config[key] = _map_token_ids(config[key], token_map)
    return config


def scale_down(published: dict) -> dict:
    """The published config with only its sizes replaced by test sizes (and token ids mapped
    into the small vocabulary). For a multimodal config, the text and vision sub-configs are
    scaled, and the image-token geometry shrinks with the image."""
    token_map = {}
    large = _large_token_ids(published) + _large_token_ids(published.get("text_config") or {})
    for i, token in enumerate(sorted(set(large))):
        token_map[token] = SMALL_VOCAB - 1 - i
    if "text_config" not in published:
        return _scale_text(published, token_map, sub_config=False)

    config = copy.deepcopy(published)
    config["text_config"] = _scale_text(published["text_config"], token_map, sub_config=True)
    vision = config["vision_config"]
    for key, value in SMALL_VISION.items():
        vision[key] = value
    # The projector pools the (image_size / patch_size)² patches down to mm_tokens_per_image:
    # 4×4 patches pooled 2×2 keep its kernel an integer, as 64×64 pooled to 16×16 is.
    config["mm_tokens_per_image"] = SMALL_MM_TOKENS_PER_IMAGE
    for key in TOKEN_ID_FIELDS:
        if key in config:
            config[key] = _map_token_ids(config[key], token_map)
    return config


def sliding_windows(config: dict) -> list[int]:
    """Every sliding window a (scaled) config switches on, in its text config."""
    text = config.get("text_config", config)
    window = text.get("sliding_window")
    if window is None or text.get("use_sliding_window") is False:
        return []
    return [window]
