"""Hugging Face model directory → a LanguageModel on a device: the native CausalLM for the
families model_config.py knows, transformers' implementation for other decoder-only models."""

from __future__ import annotations

import os
import re

import torch

from .hf_checkpoint import CheckpointError, load_state_dict, read_config
from .language_model import LanguageModel
from .model import CausalLM, ModelConfig
from .model_config import SUPPORTED_MODEL_TYPES
from .quant import QuantizedLinear
from .rope_scaling import with_rope_scaling

# The protocol's MODEL_DTYPES other than "auto", as torch dtypes.
TORCH_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


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
    return TORCH_DTYPES[requested]


def available_memory(device: torch.device) -> int | None:
    """Bytes new tensors can take on `device`, or None where that cannot be told."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        # Blocks torch's caching allocator holds but no tensor uses are free to it as well.
        return free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    if device.type != "cpu":
        return None
    try:
        with open("/proc/meminfo") as f:
            available = next(int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable:"))
    except (OSError, StopIteration):
        try:
            available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError):
            return None
    try:  # a container's cgroup (v2) limit, which /proc/meminfo does not show
        with open("/sys/fs/cgroup/memory.max") as limit, open("/sys/fs/cgroup/memory.current") as current:
            return min(available, int(limit.read()) - int(current.read()))
    except (OSError, ValueError):  # no cgroup v2, or "max": no limit
        return available


def human_size(n: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if n < 1000:
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def check_memory(config: ModelConfig, device: torch.device, dtype: torch.dtype, source: str) -> None:
    """Refuse a model that cannot fit before building it: a wrong field (200000 layers, a huge
    vocabulary) otherwise holds the worker for minutes and leaves gigabytes resident after failing.
    The model is built on the CPU in torch's default dtype, then moved and cast; sampling adds
    a float32 RoPE table of max_position_embeddings rows on the device."""
    counts = config.parameter_counts()
    tables = len(config.rope_kinds)  # Gemma 3's sliding layers have a table of their own
    rope = {
        f"max_position_embeddings {config.max_position_embeddings} × head_dim {config.head_dim} (RoPE table{'s' * (tables > 1)})": tables
        * config.max_position_embeddings
        * 2
        * config.head_dim
        * 4
    }
    build = torch.get_default_dtype()
    built = {label: n * build.itemsize for label, n in counts.items()}
    if device.type == "cpu":
        needs = {device: (build, built | rope)}
    else:
        on_device = {label: n * dtype.itemsize for label, n in counts.items()}
        needs = {torch.device("cpu"): (build, built), device: (dtype, on_device | rope)}
    refuse_unless_fits(needs, source)


def refuse_unless_fits(needs: dict[torch.device, tuple[torch.dtype, dict[str, int]]], source: str) -> None:
    """needs: per device, the dtype the model is held in there and its parts' bytes by label.
    Raises, naming the largest parts, where they exceed the memory available."""
    for where, (as_dtype, parts) in needs.items():
        need, available = sum(parts.values()), available_memory(where)
        if available is not None and need > available:
            breakdown = "; ".join(
                f"{label}: {human_size(n)}" for label, n in sorted(parts.items(), key=lambda p: -p[1])
            )
            raise CheckpointError(
                f"{source}: this model needs {human_size(need)} of {where} memory in {str(as_dtype).removeprefix('torch.')} "
                f"but {human_size(available)} is available ({breakdown})"
            )


_LAYER = re.compile(r"^model\.layers\.(\d+)\.")
# Where multimodal checkpoints (Gemma 3 4B and up) keep their text model: transformers 5 saves
# model.language_model.*, the published files hold language_model.model.*.
TEXT_MODEL_PREFIXES = (
    ("model.language_model.", "model."),
    ("language_model.model.", "model."),
    ("language_model.lm_head.", "lm_head."),
)
VISION_PREFIXES = ("model.vision_tower.", "model.multi_modal_projector.", "vision_tower.", "multi_modal_projector.")


def text_model_weights(weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A multimodal checkpoint's text-model weights under a text-only model's names (the
    vision tower and projector dropped); any other checkpoint's weights as they are."""
    if not any(key.startswith(prefix) for key in weights for prefix, _ in TEXT_MODEL_PREFIXES):
        return weights
    text = {}
    for key, tensor in weights.items():
        if key.startswith(VISION_PREFIXES):
            continue
        for prefix, native in TEXT_MODEL_PREFIXES:
            if key.startswith(prefix):
                key = native + key[len(prefix) :]
                break
        text[key] = tensor
    return text


def load_model(
    model_dir: str,
    device: torch.device,
    dtype: torch.dtype,
    rope_scaling: dict | None = None,
    allow_non_finite: bool = False,
) -> LanguageModel:
    """rope_scaling ({type, factor, target_length}) stretches the context beyond config.json's;
    allow_non_finite loads weights holding NaN or Inf (refused otherwise)."""
    if not os.path.isdir(model_dir):
        raise CheckpointError(f"{model_dir}: no such model directory")
    source = os.path.join(model_dir, "config.json")
    config_json = read_config(model_dir)
    if config_json.get("model_type") not in SUPPORTED_MODEL_TYPES:
        # Other decoder-only architectures run on transformers' own modules (imported only then).
        from .transformers_model import load_transformers_model

        return load_transformers_model(model_dir, config_json, device, dtype, rope_scaling, allow_non_finite)
    config = ModelConfig.from_hf(config_json, source=source)
    if rope_scaling is not None:
        config = with_rope_scaling(config, rope_scaling["type"], rope_scaling["factor"], rope_scaling["target_length"])
    check_memory(config, device, dtype, source)
    weights = text_model_weights(load_state_dict(model_dir, allow_non_finite))
    if config.tie_word_embeddings:
        weights.pop("lm_head.weight", None)  # some checkpoints store the tied head too; it is the embedding
    # Before building: a layer count the weights lack would take minutes to build, only to fail.
    layers = sorted({int(m.group(1)) for key in weights if (m := _LAYER.match(key))})
    if len(layers) != config.num_hidden_layers:
        held = f" (model.layers.{layers[0]} to model.layers.{layers[-1]})" if layers else ""
        raise CheckpointError(
            f"{source}: num_hidden_layers is {config.num_hidden_layers} but the weights hold {len(layers)} layers{held}"
        )
    model = CausalLM(config)
    expected = model.state_dict()
    missing = [k for k in expected if k not in weights]
    if missing:
        raise CheckpointError(
            f"{model_dir}: tensor {missing[0]!r} is missing"
            + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
        )
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
