"""Exporting a trained model as a standalone Hugging Face directory: LoRA adapters merged into
the base weights (W + (α/r)·B·A), the value head dropped, quantized bases dequantized, written
as config.json + safetensors (sharded above a size) + generation_config.json, and optionally
onnx/model.onnx.

Everything works on copies: the live model keeps its adapters, optimizer state and mode, so
training can go on after an export. The directory appears whole or not at all: it is written
under a temporary sibling name and renamed into place; what killed exports left there is
removed by the next one (staging.py).
"""

from __future__ import annotations

import copy
import json
import os

import torch

from .hf_checkpoint import CONFIG, GENERATION_CONFIG, save_checkpoint, write_json
from .language_model import LanguageModel
from .loading import TORCH_DTYPES
from .lora import LoRALinear
from .model_config import ModelConfig, text_model_config
from .staging import check_replaceable, fsync_dir, replace_directory

ONNX_FILE = os.path.join("onnx", "model.onnx")


class ExportError(ValueError):
    pass


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def merged_state_dict(
    model: LanguageModel, dtype: torch.dtype | None = None
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """The model's weights under their Hugging Face names with every LoRA adapter merged in,
    on CPU, as fresh tensors (nothing aliases the live model). Adapters are merged whether or
    not they are currently enabled: the export is the trained policy. Returns (weights, merged
    module names).

    In the model's own dtype the merge is `W + (B @ A) * scale` exactly as lora.merged_weight
    computes it, which is what the bridge samples with: an fp32 export reproduces the adapter
    model's greedy output token for token. Into another dtype it is computed in fp32 and
    rounded once. A quantized base (int8 / NF4) is dequantized first (its state dict already
    holds the dequantized weight)."""
    adapters = {name: m for name, m in model.named_modules() if isinstance(m, LoRALinear)}
    weights: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        for key, tensor in model.state_dict().items():
            module, _, leaf = key.rpartition(".")
            if leaf.startswith("lora_") or key.startswith("value_head."):
                continue
            target = dtype if dtype is not None and tensor.is_floating_point() else tensor.dtype
            layer = adapters.get(module) if leaf == "weight" else None
            if layer is not None:
                a, b = layer.lora_A.detach(), layer.lora_B.detach()
                if tensor.dtype == target:
                    tensor = tensor + (b @ a) * layer.scale
                else:
                    tensor = tensor.float() + (b.float() @ a.float()) * layer.scale
            # clone: .to() returns the same tensor when nothing changes.
            weights[key] = tensor.detach().to(device="cpu", dtype=target).clone()
    return weights, sorted(adapters)


def _rope_block(scaling) -> dict:
    block = {"rope_type": scaling.type, "factor": scaling.factor}
    if scaling.type != "dynamic":
        block["original_max_position_embeddings"] = scaling.original_max_position_embeddings
    if scaling.type == "yarn":
        block.update(beta_fast=scaling.beta_fast, beta_slow=scaling.beta_slow, truncate=scaling.truncate)
        for key in ("attention_factor", "mscale", "mscale_all_dim"):
            if getattr(scaling, key) is not None:
                block[key] = getattr(scaling, key)
    if scaling.type == "llama3":
        block.update(low_freq_factor=scaling.low_freq_factor, high_freq_factor=scaling.high_freq_factor)
    return block


def export_config(hf_config: dict, model: LanguageModel, dtype: torch.dtype) -> dict:
    """config.json for the export: the one the model was loaded from, with the dtype written
    and any RoPE scaling set at load time (loadModel ropeScaling) made part of it, so the
    export loads as the model ran. Quantization is not carried over: the weights are plain."""
    # A multimodal checkpoint exports its text model, which is what the bridge trained.
    config = copy.deepcopy(text_model_config(hf_config))
    config.pop("quantization_config", None)
    config["torch_dtype"] = dtype_name(dtype)
    if "dtype" in config:  # transformers 5's name for it
        config["dtype"] = dtype_name(dtype)
    scaling = model.config.rope_scaling
    if model.backend == "native" and scaling != ModelConfig.from_hf(hf_config).rope_scaling:
        # Written the published way (rope_theta, rope_scaling), which transformers reads too.
        config.pop("rope_parameters", None)
        config["rope_theta"] = model.config.rope_theta
        if model.config.local_rope_theta is not None:
            config["rope_local_base_freq"] = model.config.local_rope_theta
        if scaling is None:
            config.pop("rope_scaling", None)
        else:
            config["rope_scaling"] = _rope_block(scaling)
            if scaling.type != "dynamic":  # dynamic NTK measures from max_position_embeddings itself
                config["max_position_embeddings"] = model.config.max_position_embeddings
    return config


def generation_config(source_dir: str | None, config: dict) -> dict:
    """The source directory's generation_config.json if it has one, else one derived from
    config.json (as transformers does: bos/eos/pad token ids)."""
    found = None
    if source_dir:
        try:
            with open(os.path.join(source_dir, GENERATION_CONFIG), encoding="utf-8") as f:
                found = json.load(f)
        except (OSError, ValueError):
            found = None
    gen = found if isinstance(found, dict) else {"_from_model_config": True}
    for key in ("bos_token_id", "eos_token_id", "pad_token_id"):
        if key not in gen and config.get(key) is not None:
            gen[key] = config[key]
    return gen


def write_export(
    directory: str,
    config: dict,
    weights: dict[str, torch.Tensor],
    gen_config: dict,
    shard_bytes: int | None = None,
    metadata: dict[str, str] | None = None,
    onnx=None,
) -> list[str]:
    """Writes the export directory atomically: everything goes into a temporary sibling, which
    is then renamed over `directory` (an earlier export there is replaced). `onnx(path)`, if
    given, writes the ONNX file into the temporary directory before the rename. Returns the
    files written (relative paths)."""
    target = os.path.abspath(directory)

    def write(tmp: str) -> None:
        save_checkpoint(
            tmp, config, weights, max_shard_bytes=shard_bytes, metadata={**(metadata or {}), "format": "pt"}
        )
        write_json(os.path.join(tmp, GENERATION_CONFIG), gen_config)
        if onnx is not None:
            onnx(os.path.join(tmp, ONNX_FILE))
            fsync_dir(os.path.join(tmp, os.path.dirname(ONNX_FILE)))

    replace_directory(target, check_replaceable(target, CONFIG, "a model", ExportError), write)
    files = []
    for root, _, names in os.walk(target):
        files.extend(os.path.relpath(os.path.join(root, n), target) for n in names)
    return sorted(files)


def lora_summary(lora: dict | None, merged: list[str]) -> dict | None:
    if lora is None and not merged:
        return None
    return {**(lora or {}), "merged_modules": len(merged)}


def export_dtype(requested: str, model: LanguageModel) -> torch.dtype:
    if requested == "auto":
        return model.output_weight().dtype
    return TORCH_DTYPES[requested]
