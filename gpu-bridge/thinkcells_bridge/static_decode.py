"""One decode step of a native model with fixed tensor shapes, for any device.

Beside the model, not inside it: the step runs the model's own layers, but where
model.hidden_states narrows the KV cache to the slots filled so far (shapes that grow every
step, set by the Python int cache.length), this step attends over the preallocated cache's
whole capacity, hides the slots not filled yet with a mask computed from a slot tensor, and
writes the new keys and values with index_copy_ at that tensor. Every tensor keeps its shape
from step to step and nothing reads a device value back to the host, which is what CUDA graphs
and torch.compile need to capture a step once and replay it. Sampling runs its PyTorch decode
steps through here; the CPU's C step (native_kernels.NativeDecoder) stays where it applies.
"""

from __future__ import annotations

import torch

from .model import CausalLM, KVCache


class StaticSlot:
    """A KVCache as one static step sees it (Attention calls `append`): the new keys and values
    go to the slot `slot` names, the same for every row (left padding aligns the rows), and
    attention reads every slot of the cache; the mask hides the ones not filled yet."""

    def __init__(self, cache: KVCache, slot: torch.Tensor):
        self.cache, self.slot = cache, slot

    def append(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """k, v [B, 1, kv_head, D] → the layer's keys and values [B, kv_head, capacity, D]."""
        kt, vt = self.cache.k[layer], self.cache.v[layer]
        kt.index_copy_(3, self.slot, k.permute(0, 2, 3, 1))
        vt.index_copy_(3, self.slot, v.permute(0, 2, 3, 1))
        return kt.transpose(2, 3), vt.transpose(2, 3)


def slot_mask(start: torch.Tensor, slot: torch.Tensor, capacity: int, dtype, window: int | None) -> torch.Tensor:
    """Additive mask [B, 1, 1, capacity] for the query at cache slot `slot` (int64 [1]): it sees
    slots start[b]..slot, with a sliding window only the last `window` of them."""
    slots = torch.arange(capacity, device=start.device)[None, :]
    allowed = (slots <= slot) & (slots >= start[:, None])
    if window is not None:
        allowed &= slots > slot - window
    mask = torch.zeros(allowed.shape, dtype=dtype, device=start.device)
    return mask.masked_fill_(~allowed, torch.finfo(dtype).min)[:, None, None, :]


def _rope_need(model: CausalLM, cache: KVCache, kind: str) -> int:
    # The table covers the whole cache, so it is built once, not grown per step. Dynamic NTK's
    # frequencies depend on the length itself: that one keeps hidden_states' per-step length
    # (its table changes only past the context limit, which the worker refuses to sample into).
    scaling = model.config.rope_for(kind)[1]
    return cache.length + 1 if scaling is not None and scaling.type == "dynamic" else cache.capacity


def decode_step(
    model: CausalLM, cache: KVCache, ids: torch.Tensor, positions: torch.Tensor, slot: torch.Tensor
) -> torch.Tensor:
    """One new token per row: ids, positions [B, 1] (long), slot int64 [1] on the model's device,
    the cache slot the token fills. Writes that slot of every layer and returns the final-norm
    hidden states [B, 1, hidden], as model.hidden_states would for the same token. The caller
    advances `slot` (in place, so a captured step sees the new value) and cache.length."""
    config = model.config
    x = model.model.embed_tokens(ids)
    if model.embed_scale is not None:
        x = x * torch.tensor(model.embed_scale, dtype=x.dtype)
    tables = {}
    for kind in config.rope_kinds:
        rope = model.rope(positions, _rope_need(model, cache, kind), x.dtype, kind)
        tables[kind] = (rope[:, :, None, 0], rope[:, :, None, 1])
    masks: dict[int | None, torch.Tensor] = {}

    def mask_fn(window: int | None) -> torch.Tensor:
        if window not in masks:
            masks[window] = slot_mask(cache.start, slot, cache.capacity, x.dtype, window)
        return masks[window]

    view = StaticSlot(cache, slot)
    for i, layer in enumerate(model.model.layers):
        cos, sin = tables[config.rope_kind(i)]
        x = layer(x, cos, sin, mask_fn, view, i)
    return model.model.norm(x)
