"""What the bridge's operations need of a model, whichever code runs it.

Two implementations: model.CausalLM, native PyTorch for the families users bring most
(Llama, Mistral, Qwen2/3, Gemma 2/3), and transformers_model.TransformersCausalLM, any other
decoder-only architecture transformers' AutoModelForCausalLM builds. Sampling, training,
LoRA, quantization, export and checkpoints see only this.

A model's state-dict keys are its Hugging Face names (`model.layers.0.self_attn.q_proj.weight`),
so weights load, save and export under the names transformers reads.
"""

from __future__ import annotations

from typing import Literal, Protocol

import torch
from torch import nn

Backend = Literal["native", "transformers"]


class LanguageModel(Protocol):
    backend: Backend
    # Child-module names of the decoder layers' nn.Linear projections: what LoRA's
    # "all-linear" and weight quantization act on, and the names a LoRA target list may use.
    adapter_targets: tuple[str, ...]
    config: ModelConfigLike
    value_head: nn.Linear | None

    def output_weight(self) -> torch.Tensor:
        """The output embedding [vocab, hidden]: its device and dtype are the model's."""

    def hidden_states(
        self,
        input_ids: torch.Tensor,
        positions: torch.Tensor,
        pad: torch.Tensor,
        cache=None,
        checkpoint_layers: bool = False,
        segments: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Final-norm hidden states [B, T, hidden] for input_ids [B, T] at `positions` [B, T];
        row b's first pad[b] tokens (or cache slots) are left padding nothing attends to. With
        a cache (from new_cache), the tokens are appended to it. segments [B, T] (no cache):
        packed examples, each token attending only to its own example's tokens."""

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """hidden [..., hidden] → logits [..., vocab] (final soft-capping included)."""

    def new_cache(self, start: torch.Tensor, capacity: int, dtype: torch.dtype):
        """An empty KV cache for len(start) rows of up to `capacity` tokens; row b's first
        start[b] slots will be left padding. Its `repeat_interleave(n)` returns the cache with n
        adjacent copies of every row (sampling prefills each prompt once, then copies it)."""

    def add_value_head(self) -> None: ...

    def values(self, hidden: torch.Tensor) -> torch.Tensor: ...


class ValueHead:
    """PPO's critic, for either implementation: a scalar per position from the final hidden
    state. The model sets `value_head = None` in its __init__."""

    value_head: nn.Linear | None

    def add_value_head(self) -> None:
        """A fresh trainable value head (zero-initialised: V = 0 until trained)."""
        weight = self.output_weight()
        self.value_head = nn.Linear(self.config.hidden_size, 1).to(device=weight.device, dtype=weight.dtype)
        nn.init.zeros_(self.value_head.weight)
        nn.init.zeros_(self.value_head.bias)

    def values(self, hidden: torch.Tensor) -> torch.Tensor:
        if self.value_head is None:
            raise ValueError("the model has no value head (add_value_head first)")
        return self.value_head(hidden).squeeze(-1)


class ModelConfigLike(Protocol):
    """The fields of model.ModelConfig every model exposes (info, checks, export)."""

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
    rope_scaling: object | None
