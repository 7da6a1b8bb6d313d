"""config.json → ModelConfig for the native families: Llama 2/3, Mistral, Qwen2/2.5, Qwen3,
Gemma 2 and Gemma 3 (text-only checkpoints, and the text half of multimodal ones).

What differs between the families is data (FAMILIES below), read with transformers'
semantics: the defaults its config classes fill in for fields a config.json leaves out, which
layers slide their attention window, which projections carry a bias. Both the published
config.json style (rope_theta, rope_local_base_freq, sliding_window_pattern) and the one
transformers 5 writes (rope_parameters per layer type, layer_types) are read.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from .rope_scaling import RopeScaling, parse_rope_scaling

FULL, SLIDING = "full_attention", "sliding_attention"
# Activations by their config.json names, as transformers' ACT2FN spells them.
ACTIVATIONS = ("silu", "gelu_pytorch_tanh", "gelu")


class ModelConfigError(ValueError):
    pass


@dataclass(frozen=True)
class Family:
    """How one model_type departs from Llama."""

    qkv_bias: str = "config"  # "config" (attention_bias), "always" or "never"
    o_bias: str = "config"
    mlp_bias: str = "never"  # "config": mlp_bias
    qk_norm: bool = False  # RMSNorm over each head's queries and keys, before RoPE
    # Gemma: RMSNorm scales by (1 + w) in fp32, embeddings × √hidden, norms before and after
    # both attention and MLP, attention scaled by query_pre_attn_scalar^-½, soft-capping.
    gemma: bool = False
    # Which layers slide their window: "none"; "all" (Mistral); "qwen" (layers from
    # max_window_layers on, only with use_sliding_window); or every Nth layer global
    # ("pattern", N from sliding_window_pattern).
    window: str = "none"
    # Fields transformers' config class fills in when config.json leaves them out.
    defaults: dict = field(default_factory=dict)
    # RoPE bases where config.json gives none (top level or in rope_parameters); a local one
    # gives sliding layers their own (Gemma 3).
    rope_theta: float = 10000.0
    local_rope_theta: float | None = None


_GEMMA_COMMON = dict(
    head_dim=256,
    hidden_activation="gelu_pytorch_tanh",
    rms_norm_eps=1e-6,
    bos_token_id=2,
    eos_token_id=1,
    pad_token_id=0,
    tie_word_embeddings=True,
    query_pre_attn_scalar=256,
    sliding_window=4096,
    num_attention_heads=8,
    num_key_value_heads=4,
    hidden_size=2304,
    intermediate_size=9216,
    num_hidden_layers=26,
)

FAMILIES: dict[str, Family] = {
    "llama": Family(mlp_bias="config", defaults=dict(max_position_embeddings=2048)),
    "mistral": Family(
        qkv_bias="never",
        o_bias="never",
        window="all",
        defaults=dict(sliding_window=4096, max_position_embeddings=131072),
    ),
    "qwen2": Family(
        qkv_bias="always",
        o_bias="never",
        window="qwen",
        defaults=dict(
            max_position_embeddings=32768, use_sliding_window=False, sliding_window=4096, max_window_layers=28
        ),
    ),
    "qwen3": Family(
        qk_norm=True,
        window="qwen",
        defaults=dict(
            max_position_embeddings=32768,
            use_sliding_window=False,
            sliding_window=4096,
            max_window_layers=28,
            head_dim=128,
        ),
    ),
    "gemma2": Family(
        gemma=True,
        window="pattern",
        defaults=dict(
            _GEMMA_COMMON,
            vocab_size=256000,
            max_position_embeddings=8192,
            sliding_window_pattern=2,
            attn_logit_softcapping=50.0,
            final_logit_softcapping=30.0,
        ),
    ),
    "gemma3_text": Family(
        gemma=True,
        qk_norm=True,
        window="pattern",
        rope_theta=1_000_000.0,
        local_rope_theta=10000.0,
        defaults=dict(_GEMMA_COMMON, vocab_size=262208, max_position_embeddings=131072, sliding_window_pattern=6),
    ),
}
# Multimodal checkpoints whose text model is a native family: (its config's text block, its
# family, the transformers class of the text model alone, which an export is).
MULTIMODAL = {"gemma3": ("text_config", "gemma3_text", "Gemma3ForCausalLM")}
SUPPORTED_MODEL_TYPES = tuple(FAMILIES) + tuple(MULTIMODAL)


@dataclass(frozen=True)
class ModelConfig:
    model_type: str
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    max_position_embeddings: int
    rms_norm_eps: float
    rope_theta: float
    tie_word_embeddings: bool
    attention_bias: bool  # q/k/v projections
    bos_token_id: int | None
    eos_token_ids: tuple[int, ...]
    rope_scaling: RopeScaling | None = None  # context extension; None is plain RoPE
    o_bias: bool = False
    mlp_bias: bool = False
    qk_norm: bool = False
    gemma: bool = False  # see Family.gemma
    hidden_act: str = "silu"
    # Per layer: FULL or SLIDING; a SLIDING layer sees the last `sliding_window` slots.
    layer_types: tuple[str, ...] = ()
    sliding_window: int | None = None
    local_rope_theta: float | None = None  # Gemma 3's sliding layers rotate with their own base (unscaled)
    attention_scale: float | None = None  # None: head_dim^-½
    attn_logit_softcapping: float | None = None
    final_logit_softcapping: float | None = None

    def window(self, layer: int) -> int | None:
        """How many slots back the layer's queries see (itself included), or None: all."""
        return self.sliding_window if self.layer_types and self.layer_types[layer] == SLIDING else None

    def rope_for(self, layer_type: str) -> tuple[float, RopeScaling | None]:
        """The RoPE base and scaling of a kind of layer."""
        if layer_type == SLIDING and self.local_rope_theta is not None:
            return self.local_rope_theta, None
        return self.rope_theta, self.rope_scaling

    @property
    def rope_kinds(self) -> tuple[str, ...]:
        """The layer kinds with tables of their own: two where sliding layers rotate differently."""
        return (FULL, SLIDING) if self.local_rope_theta is not None else (FULL,)

    def rope_kind(self, layer: int) -> str:
        return self.layer_types[layer] if self.local_rope_theta is not None else FULL

    @property
    def llama_shaped(self) -> bool:
        """Plain Llama math (the native C decode step's and the ONNX export's): no Gemma
        features, q/k norms, o/MLP biases or sliding windows."""
        return (
            not (self.gemma or self.qk_norm or self.o_bias or self.mlp_bias or self.sliding_window)
            and self.hidden_act == "silu"
        )

    @staticmethod
    def from_hf(config: dict, source: str = "config.json") -> ModelConfig:
        model_type = config.get("model_type")
        if model_type in MULTIMODAL:
            config = text_model_config(config, source)
            model_type = config["model_type"]
        if model_type not in FAMILIES:
            raise ModelConfigError(
                f"{source}: model_type {model_type!r} is not supported natively; expected one of {', '.join(SUPPORTED_MODEL_TYPES)}"
            )
        family = FAMILIES[model_type]
        config = {**family.defaults, **config}
        return _parse(config, model_type, family, source)

    def parameter_counts(self) -> dict[str, int]:
        """The parameters CausalLM(self) has, by the config.json fields that size them (keys
        name them), known before anything is allocated: loading refuses what cannot fit."""
        h, q, kv = self.hidden_size, self.num_attention_heads * self.head_dim, self.num_key_value_heads * self.head_dim
        attention = h * (q + 2 * kv) + q * h + ((q + 2 * kv) if self.attention_bias else 0) + (h if self.o_bias else 0)
        attention += 2 * self.head_dim if self.qk_norm else 0
        mlp = 3 * h * self.intermediate_size + ((2 * self.intermediate_size + h) if self.mlp_bias else 0)
        layer = attention + mlp + (4 if self.gemma else 2) * h  # + the norms
        return {
            f"vocab_size {self.vocab_size} × hidden_size {h}": self.vocab_size
            * h
            * (1 if self.tie_word_embeddings else 2),
            f"num_hidden_layers {self.num_hidden_layers} × layers of hidden_size {h}, intermediate_size "
            f"{self.intermediate_size}": self.num_hidden_layers * layer,
            f"hidden_size {h} (final norm)": h,
        }


def text_model_config(config: dict, source: str = "config.json") -> dict:
    """A multimodal config's text model, as the config.json of a text-only model; token ids
    the text block leaves out come from the top level (Gemma 3 keeps eos_token_id there).
    Any other config as it is."""
    model_type = config.get("model_type")
    if model_type not in MULTIMODAL:
        return config
    key, text_type, architecture = MULTIMODAL[model_type]
    text = config.get(key)
    if not isinstance(text, dict):
        raise ModelConfigError(f"{source}: model_type {model_type!r} needs a {key!r} object (its text model)")
    if text.get("model_type", text_type) != text_type:
        raise ModelConfigError(f"{source}: {key}.model_type is {text['model_type']!r}; expected {text_type!r}")
    merged = {**text, "model_type": text_type, "architectures": [architecture]}
    for name in ("bos_token_id", "eos_token_id", "pad_token_id", "tie_word_embeddings", "torch_dtype", "dtype"):
        if name not in text and name in config:
            merged[name] = config[name]
    return merged


def _rope_blocks(config: dict) -> tuple[dict, dict]:
    """(the full-attention layers' rope block, the sliding layers'): transformers 5 keys
    rope_parameters by layer type for Gemma 3; elsewhere one block serves every layer."""
    block = config.get("rope_parameters") or {}
    if isinstance(block, dict) and FULL in block:
        return block.get(FULL) or {}, block.get(SLIDING) or {}
    return block if isinstance(block, dict) else {}, {}


def _parse(config: dict, model_type: str, family: Family, source: str) -> ModelConfig:
    def integer(key: str, default: int | None = None) -> int:
        """config[key] as a positive integer; absent or null gives `default` (None: required)."""
        value = config.get(key)
        if value is None:
            if default is None:
                raise ModelConfigError(f"{source}: field {key!r} is missing")
            return default
        # bool is an int to Python, not to a config.
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ModelConfigError(f"{source}: {key} is {value!r}; expected a positive integer")
        return value

    def number(key: str, value) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
            raise ModelConfigError(f"{source}: {key} is {value!r}; expected a positive number")
        return float(value)

    def optional_number(key: str) -> float | None:
        return None if config.get(key) is None else number(key, config[key])

    def token_ids(key: str) -> tuple[int, ...]:
        value = config.get(key)
        ids = [] if value is None else value if isinstance(value, list) else [value]
        if not all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in ids):
            raise ModelConfigError(f"{source}: {key} is {value!r}; expected integer token ids (one, a list, or null)")
        return tuple(ids)

    def flag(setting: str, key: str) -> bool:
        return setting == "always" or (setting == "config" and bool(config.get(key, False)))

    global_rope, local_rope = _rope_blocks(config)
    try:
        rope_scaling = parse_rope_scaling(config, source)
    except ValueError as e:
        raise ModelConfigError(str(e)) from None
    rope_theta = config.get("rope_theta", global_rope.get("rope_theta", family.rope_theta))

    heads = integer("num_attention_heads")
    hidden = integer("hidden_size")
    layers = integer("num_hidden_layers")
    kv_heads = integer("num_key_value_heads", heads)
    if heads % kv_heads:
        raise ModelConfigError(
            f"{source}: num_key_value_heads is {kv_heads}, which does not divide num_attention_heads ({heads})"
        )
    if config.get("head_dim") is None and hidden % heads:
        raise ModelConfigError(
            f"{source}: hidden_size is {hidden}, not divisible by num_attention_heads ({heads}), and no head_dim is given"
        )
    head_dim = integer("head_dim", hidden // heads)
    if head_dim % 2:
        derived = "" if config.get("head_dim") is not None else " (hidden_size / num_attention_heads)"
        raise ModelConfigError(
            f"{source}: head_dim is {head_dim}{derived}; expected an even number (RoPE rotates pairs)"
        )
    bos = token_ids("bos_token_id")
    if len(bos) > 1:
        raise ModelConfigError(f"{source}: bos_token_id is {config['bos_token_id']!r}; expected one token id or null")

    # Gemma names it hidden_activation (Gemma 2 configs carry both; transformers reads that one).
    act_key = "hidden_activation" if family.gemma and config.get("hidden_activation") else "hidden_act"
    act = config.get(act_key, "silu")
    if act not in ACTIVATIONS:
        raise ModelConfigError(f"{source}: {act_key} is {act!r}; expected one of {', '.join(ACTIVATIONS)}")
    if config.get("use_bidirectional_attention"):
        raise ModelConfigError(
            f"{source}: use_bidirectional_attention is true (an embedding model); only causal language models are supported"
        )

    window = None if config.get("sliding_window") is None else integer("sliding_window")
    if family.window == "qwen" and not config.get("use_sliding_window"):
        window = None  # transformers ignores the field unless use_sliding_window is set
    layer_types = _layer_types(config, family, layers, source)

    local_theta = None
    if family.local_rope_theta is not None:
        local_theta = number(
            "rope_local_base_freq",
            config.get("rope_local_base_freq", local_rope.get("rope_theta", family.local_rope_theta)),
        )
    scalar = optional_number("query_pre_attn_scalar") if family.gemma else None
    return ModelConfig(
        model_type=model_type,
        vocab_size=integer("vocab_size"),
        hidden_size=hidden,
        intermediate_size=integer("intermediate_size"),
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        head_dim=head_dim,
        max_position_embeddings=integer("max_position_embeddings", 2048),
        rms_norm_eps=number("rms_norm_eps", config.get("rms_norm_eps", 1e-6)),
        rope_theta=number("rope_theta", rope_theta),
        # Llama defaults to untied; Qwen2 configs say so explicitly; Gemma's defaults tie.
        tie_word_embeddings=bool(config.get("tie_word_embeddings", False)),
        attention_bias=flag(family.qkv_bias, "attention_bias"),
        o_bias=flag(family.o_bias, "attention_bias"),
        mlp_bias=flag(family.mlp_bias, "mlp_bias"),
        qk_norm=family.qk_norm,
        gemma=family.gemma,
        hidden_act=act,
        bos_token_id=bos[0] if bos else None,
        eos_token_ids=token_ids("eos_token_id"),
        rope_scaling=rope_scaling,
        layer_types=layer_types,
        sliding_window=window if SLIDING in layer_types else None,
        local_rope_theta=local_theta,
        attention_scale=None if scalar is None else scalar**-0.5,
        attn_logit_softcapping=optional_number("attn_logit_softcapping") if family.gemma else None,
        final_logit_softcapping=optional_number("final_logit_softcapping") if family.gemma else None,
    )


def _layer_types(config: dict, family: Family, layers: int, source: str) -> tuple[str, ...]:
    """Each layer's attention kind: config.json's layer_types where given, else the family's rule."""
    given = config.get("layer_types")
    if given is not None and family.window != "all":  # transformers' Mistral ignores layer_types
        if not isinstance(given, list) or len(given) != layers or not all(t in (FULL, SLIDING) for t in given):
            raise ModelConfigError(
                f"{source}: layer_types must list {FULL!r} or {SLIDING!r} for each of the {layers} layers, got {given!r}"
            )
        types = tuple(given)
    elif family.window == "all":
        types = (SLIDING,) * layers
    elif family.window == "qwen":
        start = config.get("max_window_layers", layers)
        types = tuple(SLIDING if i >= start else FULL for i in range(layers))
    elif family.window == "pattern":
        every = config.get("sliding_window_pattern")
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ModelConfigError(f"{source}: sliding_window_pattern is {every!r}; expected a positive integer")
        types = tuple(FULL if (i + 1) % every == 0 else SLIDING for i in range(layers))
    else:
        types = (FULL,) * layers
    return types  # a sliding layer without a window sees everything, as in transformers
