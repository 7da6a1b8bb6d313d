"""Decoder-only architectures without native code, run by transformers' own modules behind
language_model.LanguageModel: whatever AutoModelForCausalLM builds (GPT-NeoX, OLMo 2, Phi-3,
StableLM, ...) samples, trains with LoRA, saves state and exports like the native families.

The transformers model's top-level children are registered on the wrapper under their own
names, so state_dict() and named_modules() are exactly transformers' (what LoRA, quantization,
training state and export walk); the transformers model object itself stays unregistered.
Left padding is an attention_mask plus explicit position_ids, and the KV cache transformers'
DynamicCache: the same inputs transformers' generate() gives these models.
"""

from __future__ import annotations

import inspect
import os
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .environment import require
from .hf_checkpoint import CONFIG, CheckpointError, load_state_dict
from .language_model import ValueHead
from .loading import refuse_unless_fits
from .model_config import SUPPORTED_MODEL_TYPES, ModelConfigError


@dataclass(frozen=True)
class TransformersConfig:
    """language_model.ModelConfigLike, read from the transformers config (its text part for
    composite models)."""

    model_type: str
    vocab_size: int
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    max_position_embeddings: int
    tie_word_embeddings: bool
    bos_token_id: int | None
    eos_token_ids: tuple[int, ...]
    final_logit_softcapping: float | None
    # loadModel ropeScaling is native-only; RoPE scaling config.json asks for is transformers' to apply.
    rope_scaling: None = None

    @staticmethod
    def read(hf_config, tied: bool, source: str) -> TransformersConfig:
        text = hf_config.get_text_config()

        def field(*names: str) -> int:
            for name in names:
                value = getattr(text, name, None)
                if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                    return value
            raise ModelConfigError(
                f"{source}: {' or '.join(names)} is missing or not a positive integer "
                f"(the bridge needs it for model_type {hf_config.model_type!r})"
            )

        bos, eos = text.bos_token_id, text.eos_token_id
        heads = field("num_attention_heads")
        return TransformersConfig(
            model_type=hf_config.model_type,
            vocab_size=field("vocab_size"),
            hidden_size=field("hidden_size"),
            num_hidden_layers=field("num_hidden_layers"),
            num_attention_heads=heads,
            num_key_value_heads=getattr(text, "num_key_value_heads", None) or heads,
            max_position_embeddings=field("max_position_embeddings", "n_positions", "max_sequence_length"),
            tie_word_embeddings=tied,
            bos_token_id=bos if isinstance(bos, int) else None,
            eos_token_ids=tuple(eos if isinstance(eos, list) else [] if eos is None else [eos]),
            final_logit_softcapping=getattr(text, "final_logit_softcapping", None),
        )


class TransformersCache:
    """transformers' DynamicCache and the slots filled so far: the attention mask spans them
    all (the rows' left padding comes with every call, as `pad`)."""

    def __init__(self, hf_config):
        from transformers import DynamicCache

        self.kv = DynamicCache(config=hf_config)
        self.length = 0

    def repeat_interleave(self, n: int) -> TransformersCache:
        """n adjacent copies of each row (row r becomes rows r·n..r·n+n-1), in place: the
        prompt-major rows of n samples per prompt, from one prefill per prompt."""
        self.kv.batch_repeat_interleave(n)
        return self


def decoder_linear_names(hf: nn.Module, layers: int) -> tuple[str, ...]:
    """The distinct child names of the nn.Linear modules inside the decoder layers (the
    ModuleList of num_hidden_layers entries), in model order. A name also used by a Linear
    outside the layers (an output head) is left out: LoRA and quantization match by name."""
    in_layers = {
        id(m)
        for stack in hf.modules()
        if isinstance(stack, nn.ModuleList) and len(stack) == layers
        for m in stack.modules()
    }
    inside, outside = [], set()
    for name, module in hf.named_modules():
        if isinstance(module, nn.Linear):
            leaf = name.rpartition(".")[2]
            if id(module) in in_layers:
                inside.append(leaf)
            else:
                outside.add(leaf)
    return tuple(n for n in dict.fromkeys(inside) if n not in outside)


class TransformersCausalLM(ValueHead, nn.Module):
    """The transformers-backed implementation of language_model.LanguageModel."""

    backend = "transformers"

    def __init__(self, hf: nn.Module, config: TransformersConfig):
        super().__init__()
        self.__dict__["hf"] = hf  # unregistered: its children below carry its state-dict names
        for name, child in hf.named_children():
            self.add_module(name, child)
        self.config = config
        self.adapter_targets = decoder_linear_names(hf, config.num_hidden_layers)
        self.value_head: nn.Linear | None = None
        # Some architectures (ALiBi) take no position ids: the attention mask alone places tokens.
        self._takes_positions = "position_ids" in inspect.signature(hf.base_model.forward).parameters

    def output_weight(self) -> torch.Tensor:
        return self.hf.get_output_embeddings().weight

    def hidden_states(
        self,
        input_ids: torch.Tensor,
        positions: torch.Tensor,
        pad: torch.Tensor,
        cache: TransformersCache | None = None,
        checkpoint_layers: bool = False,
        segments: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if segments is not None:
            self._check_packing(cache)
        past = 0 if cache is None else cache.length
        slots = torch.arange(past + input_ids.shape[1], device=input_ids.device)
        kwargs = dict(
            input_ids=input_ids,
            # Packed examples: no attention mask, and `positions` restarting at each example, from
            # which transformers builds the block-diagonal causal mask (find_packed_sequence_indices).
            attention_mask=(slots[None, :] >= pad[:, None]).long() if segments is None else None,
            cache=None if cache is None else cache.kv,
            use_cache=cache is not None,
        )
        if self._takes_positions:
            kwargs["position_ids"] = positions
        checkpoint_layers = checkpoint_layers and torch.is_grad_enabled()
        if checkpoint_layers:
            # Non-reentrant: it restores the random state, so recomputed dropout masks match.
            self.hf.activation_checkpointing_enable({"use_reentrant": False})
        try:
            # The base model's last_hidden_state is after the final norm, what the head reads.
            hidden = self.hf.base_model(**kwargs).last_hidden_state
        finally:
            if checkpoint_layers:
                self.hf.activation_checkpointing_disable()
        if cache is not None:
            cache.length += input_ids.shape[1]
        return hidden

    def _check_packing(self, cache) -> None:
        if cache is not None:
            raise ValueError("segments: packed examples are for training without a cache")
        if not self._takes_positions:
            raise ValueError(
                f"segments: this {self.config.model_type} model takes no position ids, which is how transformers "
                "separates packed examples; send one example per row"
            )

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        head = self.hf.get_output_embeddings()
        logits = F.linear(hidden, head.weight, head.bias)
        cap = self.config.final_logit_softcapping
        return logits if cap is None else torch.tanh(logits / cap) * cap

    def new_cache(self, start: torch.Tensor, capacity: int, dtype: torch.dtype) -> TransformersCache:
        return TransformersCache(self.hf.config)  # grows as it fills: capacity is not needed


def unsupported(model_type, reason: str, source: str) -> ModelConfigError:
    import transformers

    return ModelConfigError(
        f"{source}: model_type {model_type!r} is not supported ({reason}); thinkcells runs "
        f"{', '.join(SUPPORTED_MODEL_TYPES)} natively, or any decoder-only model transformers' "
        f"AutoModelForCausalLM builds (transformers {transformers.__version__})"
    )


def transformers_config(config: dict, source: str):
    """The transformers config of a decoder-only causal LM, or the one error saying what is supported."""
    model_type = config.get("model_type")
    require("transformers", f"model_type {model_type!r} (not one of the native {', '.join(SUPPORTED_MODEL_TYPES)})")
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
        MODEL_FOR_MASKED_LM_MAPPING_NAMES,
        MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES,
    )

    # Encoder-decoders and encoders (BERT-likes) may have causal-LM heads in transformers too,
    # but their checkpoints are not decoder-only language models.
    if model_type in MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES or config.get("is_encoder_decoder"):
        raise unsupported(model_type, "an encoder-decoder model", source)
    if model_type in MODEL_FOR_MASKED_LM_MAPPING_NAMES:
        raise unsupported(model_type, "an encoder model", source)
    if model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        raise unsupported(model_type, "AutoModelForCausalLM does not know it", source)
    try:
        return CONFIG_MAPPING[model_type].from_dict(config)
    except (TypeError, ValueError) as e:
        raise ModelConfigError(f"{source}: transformers rejects this {model_type} config: {e}") from None


def check_memory(hf_config, device: torch.device, dtype: torch.dtype, source: str) -> None:
    """As loading.check_memory: the parameter count of a meta-device build (no memory), in
    `dtype` on the CPU where it is built and on the device it moves to."""
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        skeleton = AutoModelForCausalLM.from_config(hf_config)
    count = sum(t.numel() for t in [*skeleton.parameters(), *skeleton.buffers()])
    parts = {f"{count} parameters and buffers": count * dtype.itemsize}
    refuse_unless_fits({where: (dtype, parts) for where in dict.fromkeys([torch.device("cpu"), device])}, source)


def _first(keys) -> tuple[str, str]:
    """The first of `keys` and how many more there are, for an error message."""
    keys = sorted(keys)
    return keys[0], f" (and {len(keys) - 1} more)" if len(keys) > 1 else ""


def load_transformers_model(
    model_dir: str,
    config: dict,
    device: torch.device,
    dtype: torch.dtype,
    rope_scaling: dict | None = None,
    allow_non_finite: bool = False,
) -> TransformersCausalLM:
    """config: config.json as read. Weights come through hf_checkpoint (its path checks and
    NaN/Inf refusal), then transformers builds the model around them."""
    source = os.path.join(model_dir, CONFIG)
    hf_config = transformers_config(config, source)
    if rope_scaling is not None:
        raise ModelConfigError(
            f"{source}: loadModel ropeScaling is for the native families ({', '.join(SUPPORTED_MODEL_TYPES)}); "
            f"for model_type {hf_config.model_type!r} put rope_scaling in config.json, which transformers applies"
        )
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING
    from transformers.utils import logging

    check_memory(hf_config, device, dtype, source)
    weights = load_state_dict(model_dir, allow_non_finite)
    model_class = MODEL_FOR_CAUSAL_LM_MAPPING[type(hf_config)]
    logging.disable_progress_bar()  # a bar per load on the worker's stderr says nothing the client sees
    hf, info = model_class.from_pretrained(
        None,
        config=hf_config,
        state_dict=weights,
        dtype=dtype,
        output_loading_info=True,
        ignore_mismatched_sizes=True,
        attn_implementation="sdpa" if model_class._supports_sdpa else "eager",
    )
    # transformers would initialise what is missing at random and drop what does not fit.
    if info["missing_keys"]:
        key, more = _first(info["missing_keys"])
        raise CheckpointError(f"{model_dir}: tensor {key!r} is missing{more}")
    if info["unexpected_keys"]:
        key, more = _first(info["unexpected_keys"])
        raise CheckpointError(f"{model_dir}: unexpected tensor {key!r}{more} for model_type {hf_config.model_type!r}")
    if info["mismatched_keys"]:
        key, found, expected = sorted(info["mismatched_keys"])[0]
        raise CheckpointError(
            f"{model_dir}: tensor {key!r} has shape {list(found)}, config.json implies {list(expected)}"
        )
    tied = hf.get_output_embeddings().weight is hf.get_input_embeddings().weight
    model = TransformersCausalLM(hf, TransformersConfig.read(hf_config, tied, source)).to(device).eval()
    check_head(model, source)
    return model


@torch.inference_mode()
def check_head(model: TransformersCausalLM, source: str) -> None:
    """The bridge computes logits as the output embedding (soft-capped) of the base model's
    hidden states; an architecture that does more to its logits is refused, not run wrong."""
    device = model.output_weight().device
    ids = torch.arange(min(4, model.config.vocab_size), device=device)[None]
    expected = model.hf(input_ids=ids).logits.float()
    if not bool(expected.isfinite().all()):
        return  # non-finite weights, loaded on request: nothing to compare
    positions, pad = torch.arange(ids.shape[1], device=device)[None], torch.zeros(1, dtype=torch.long, device=device)
    got = model.logits(model.hidden_states(ids, positions, pad)).float()
    if not torch.allclose(got, expected, rtol=1e-3, atol=1e-3 * float(expected.abs().max())):
        raise unsupported(
            model.config.model_type,
            f"{type(model.hf).__name__} computes its logits other than as its output "
            f"embedding of the final hidden states (max difference {float((got - expected).abs().max()):.3g})",
            source,
        )
