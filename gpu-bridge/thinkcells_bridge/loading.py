"""Hugging Face model directory → CausalLM on a device."""

from __future__ import annotations

import os

import torch

from .hf_checkpoint import CheckpointError, load_state_dict, read_config
from .model import CausalLM, ModelConfig
from .quant import QuantizedLinear
from .rope_scaling import with_rope_scaling


def pick_device(requested: str = "auto") -> torch.device:
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)


def pick_dtype(requested: str, device: torch.device) -> torch.dtype:
    if requested == "auto":
        # bf16 where the hardware has it; CPU stays fp32, the tested path.
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[requested]


def load_model(model_dir: str, device: torch.device, dtype: torch.dtype, rope_scaling: dict | None = None) -> CausalLM:
    """rope_scaling ({type, factor, target_length}) stretches the context beyond config.json's."""
    if not os.path.isdir(model_dir):
        raise CheckpointError(f"{model_dir}: no such model directory")
    config = ModelConfig.from_hf(read_config(model_dir), source=os.path.join(model_dir, "config.json"))
    if rope_scaling is not None:
        config = with_rope_scaling(config, rope_scaling["type"], rope_scaling["factor"], rope_scaling["target_length"])
    weights = load_state_dict(model_dir)
    model = CausalLM(config)
    expected = model.state_dict()
    missing = [k for k in expected if k not in weights]
    if missing:
        raise CheckpointError(f"{model_dir}: tensor {missing[0]!r} is missing" + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
    unexpected = [k for k in weights if k not in expected and not k.endswith("rotary_emb.inv_freq")]
    if unexpected:
        raise CheckpointError(f"{model_dir}: unexpected tensor {unexpected[0]!r} for model_type {config.model_type!r}")
    for key, tensor in expected.items():
        if tuple(weights[key].shape) != tuple(tensor.shape):
            raise CheckpointError(
                f"{model_dir}: tensor {key!r} has shape {list(weights[key].shape)}, "
                f"config.json implies {list(tensor.shape)}"
            )
    model.load_state_dict({k: weights[k] for k in expected})
    return model.to(device=device, dtype=dtype).eval()


def count_parameters(model: torch.nn.Module) -> tuple[int, int]:
    """(total, trainable). A quantized base weight is stored as buffers, not parameters, but
    still counts: the model has as many parameters quantized as not."""
    params = list(model.parameters())
    quantized = sum(m.in_features * m.out_features for m in model.modules() if isinstance(m, QuantizedLinear))
    return sum(p.numel() for p in params) + quantized, sum(p.numel() for p in params if p.requires_grad)
