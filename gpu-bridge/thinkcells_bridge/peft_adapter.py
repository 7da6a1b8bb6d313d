"""LoRA adapters in PEFT's format: a directory holding adapter_config.json and
adapter_model.safetensors, as `PeftModel.save_pretrained` writes them and
`PeftModel.from_pretrained` reads them.

Tensor names are PEFT's for a LoRA on a Hugging Face causal LM,
`base_model.model.<module path>.lora_A.weight` ([r, in]) and `.lora_B.weight` ([out, r]),
where the module path is the transformers model's (`model.layers.0.self_attn.q_proj`): the
names the bridge's models use too (language_model.py). The update is the same on both sides:
W x + (α/r)·B A x, or (α/√r)·B A x with use_rslora.

thinkcells adapts decoder-layer projections only (the model's `adapter_targets`), one per
targeted name in every layer; an adapter that needs more (lm_head, embeddings, DoRA, biases,
per-module ranks, extra trained modules) is refused on load, naming what is not supported.

A saved directory appears whole or not at all: written under a temporary sibling name and
renamed into place (the same scheme as export.py's write_export; staging.py cleans up after
killed saves).
"""

from __future__ import annotations

import json
import os
import re

import torch
from torch import nn

from .hf_checkpoint import write_json
from .language_model import LanguageModel
from .loading import TEXT_MODEL_PREFIXES, VISION_PREFIXES
from .lora import LoRALinear, apply_lora, has_lora
from .safetensors import SafetensorsError, read_safetensors, write_safetensors
from .staging import check_replaceable, replace_directory

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
PREFIX = "base_model.model."
# The PEFT release whose adapter_config.json field set save_adapter writes (every field that
# release writes for a LoRA, at its defaults except the adapter's own settings).
PEFT_FORMAT_VERSION = "0.21.2"


class AdapterError(ValueError):
    pass


# -- saving ----------------------------------------------------------------------------------


def adapter_modules(model: nn.Module) -> dict[str, LoRALinear]:
    return {name: m for name, m in model.named_modules() if isinstance(m, LoRALinear)}


# A multimodal checkpoint's text model (Gemma 3 4B and up), as transformers 5 names it in
# Gemma3ForConditionalGeneration: what PEFT's names follow for an adapter on that model.
MULTIMODAL_TEXT = "model.language_model."


def peft_module_name(name: str, multimodal: bool) -> str:
    """The transformers model's name for a bridge module: the same, except a multimodal
    checkpoint's text model, which the bridge holds alone (loading.text_model_weights)."""
    return MULTIMODAL_TEXT + name.removeprefix("model.") if multimodal and name.startswith("model.") else name


def adapter_tensors(model: nn.Module, multimodal: bool = False) -> dict[str, torch.Tensor]:
    """The adapters under PEFT's names, as CPU copies in the dtype they are held in."""
    tensors = {}
    with torch.no_grad():
        for name, layer in adapter_modules(model).items():
            name = peft_module_name(name, multimodal)
            tensors[f"{PREFIX}{name}.lora_A.weight"] = layer.lora_A.detach().to("cpu").clone()
            tensors[f"{PREFIX}{name}.lora_B.weight"] = layer.lora_B.detach().to("cpu").clone()
    return tensors


def _number(value: float) -> float | int:
    return int(value) if isinstance(value, float) and value.is_integer() else value


def adapter_config(model: nn.Module, lora: dict, base_model_name_or_path: str | None, multimodal: bool = False) -> dict:
    """adapter_config.json for the model's adapters: PEFT's LoraConfig fields, with its
    defaults wherever thinkcells has nothing to say. target_modules lists the adapted
    projections' names (sorted), which PEFT matches as module-name suffixes; for a multimodal
    base, a regular expression confining them to its text model (the vision tower has
    projections of the same names)."""
    layers = adapter_modules(model)
    rank = next(iter(layers.values())).lora_A.shape[0]
    targets: list[str] | str = sorted({name.rpartition(".")[2] for name in layers})
    if multimodal:
        targets = rf"{re.escape(MULTIMODAL_TEXT)}layers\.\d+\..*\.(?:{'|'.join(targets)})"
    return {
        "alora_invocation_tokens": None,
        "alpha_pattern": {},
        "arrow_config": None,
        "auto_mapping": None,
        "base_model_name_or_path": base_model_name_or_path,
        "bias": "none",
        "corda_config": None,
        "ensure_weight_tying": False,
        "eva_config": None,
        "exclude_modules": None,
        "fan_in_fan_out": False,
        "inference_mode": True,
        "init_lora_weights": True,
        "kasa_config": None,
        "layer_replication": None,
        "layers_pattern": None,
        "layers_to_transform": None,
        "loftq_config": {},
        "lora_alpha": _number(lora["alpha"]),
        "lora_bias": False,
        "lora_dropout": float(lora["dropout"]),
        "lora_ga_config": None,
        "megatron_config": None,
        "megatron_core": "megatron.core",
        "modules_to_save": None,
        "monteclora_config": None,
        "peft_type": "LORA",
        "peft_version": PEFT_FORMAT_VERSION,
        "qalora_group_size": 16,
        "r": rank,
        "rank_pattern": {},
        "revision": None,
        "target_modules": targets,
        "target_parameters": None,
        "task_type": "CAUSAL_LM",
        "trainable_token_indices": None,
        "use_bdlora": None,
        "use_dora": False,
        "use_qalora": False,
        "use_rslora": bool(lora.get("use_rslora", False)),
        "velora_config": None,
    }


def save_adapter(
    model: LanguageModel,
    lora: dict | None,
    directory: str,
    base_model_name_or_path: str | None,
    multimodal: bool = False,
) -> tuple[list[str], dict[str, torch.Tensor]]:
    """Writes the model's LoRA adapters to `directory` in PEFT's format. `lora`: the settings
    they were applied with (rank, alpha, dropout, targets, ...). `multimodal`: the model is a
    multimodal checkpoint's text model, and the adapter is written for the whole model
    (Gemma3ForConditionalGeneration's names). Returns (files, the tensors written)."""
    if lora is None or not has_lora(model):
        raise AdapterError("the model has no LoRA adapters to save (applyLora or loadAdapter first)")
    tensors = adapter_tensors(model, multimodal)
    config = adapter_config(model, lora, base_model_name_or_path, multimodal)

    def write(tmp: str) -> None:
        write_safetensors(os.path.join(tmp, ADAPTER_WEIGHTS), tensors, metadata={"format": "pt"})
        write_json(os.path.join(tmp, ADAPTER_CONFIG), config)

    target = os.path.abspath(directory)
    # An earlier adapter there is replaced only once the new one is whole.
    replace_directory(target, check_replaceable(target, ADAPTER_CONFIG, "an adapter", AdapterError), write)
    return sorted(os.listdir(target)), tensors


# -- loading ---------------------------------------------------------------------------------

_KEY = re.compile(r"^(?P<module>.+)\.(?P<which>lora_A|lora_B)(?:\.[A-Za-z0-9_-]+)?\.weight$")


def read_adapter_config(directory: str) -> tuple[str, dict]:
    path = os.path.join(os.path.abspath(directory), ADAPTER_CONFIG)
    if not os.path.isdir(directory):
        raise AdapterError(f"{os.path.abspath(directory)}: no such adapter directory")
    try:
        with open(path, encoding="utf-8") as f:
            config = json.load(f)
    except FileNotFoundError:
        raise AdapterError(f"{path} is missing: {directory} is not a PEFT adapter directory") from None
    except ValueError as e:
        raise AdapterError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(config, dict):
        raise AdapterError(f"{path}: expected a JSON object")
    return path, config


def check_config(path: str, config: dict) -> dict:
    """The LoRA settings an adapter_config.json asks for, or an AdapterError naming the file and
    the field thinkcells does not support."""

    def fail(field: str, why: str):
        raise AdapterError(f"{path}: {field}: {why}")

    def field(name: str, default=None):
        return config.get(name, default)

    if field("peft_type") != "LORA":
        fail("peft_type", f'{field("peft_type")!r} is not supported; only LoRA adapters ("LORA") load')
    if field("task_type") not in (None, "CAUSAL_LM"):
        fail("task_type", f'{field("task_type")!r}: only causal language model adapters ("CAUSAL_LM") load')
    if field("use_dora"):
        fail("use_dora", "DoRA adapters are not supported (thinkcells applies plain LoRA: W + s·B·A)")
    for name in ("rank_pattern", "alpha_pattern"):
        if field(name):
            fail(name, "per-module ranks or alphas are not supported: every adapted module must share r and lora_alpha")
    if field("bias", "none") != "none":
        fail("bias", f'{field("bias")!r}: trained biases are not supported (only bias "none")')
    if field("lora_bias"):
        fail("lora_bias", "a bias on lora_B is not supported")
    if field("modules_to_save"):
        fail(
            "modules_to_save",
            f"{field('modules_to_save')!r}: fully trained extra modules are not supported, only LoRA on decoder-layer projections",
        )
    if field("layers_to_transform") is not None:
        fail("layers_to_transform", "adapting only some layers is not supported: thinkcells adapts every decoder layer")
    if field("fan_in_fan_out"):
        fail(
            "fan_in_fan_out",
            "true (GPT-2-style Conv1D weights) is not supported: thinkcells adapts nn.Linear projections",
        )
    for name in ("layer_replication", "target_parameters", "trainable_token_indices", "alora_invocation_tokens"):
        if field(name):
            fail(name, f"{field(name)!r} is not supported")
    for name in ("use_qalora", "use_bdlora"):
        if field(name):
            fail(name, "is not supported")
    rank = field("r")
    if not isinstance(rank, int) or isinstance(rank, bool) or rank < 1:
        fail("r", f"expected a positive integer, got {rank!r}")
    alpha = field("lora_alpha", 8)
    if not isinstance(alpha, (int, float)) or isinstance(alpha, bool) or not alpha > 0:
        fail("lora_alpha", f"expected a positive number, got {alpha!r}")
    dropout = field("lora_dropout", 0.0)
    if not isinstance(dropout, (int, float)) or isinstance(dropout, bool) or not 0 <= dropout < 1:
        fail("lora_dropout", f"expected a number in [0, 1), got {dropout!r}")
    targets = field("target_modules")
    if not (isinstance(targets, str) or (isinstance(targets, list) and all(isinstance(t, str) for t in targets))):
        fail(
            "target_modules", f'expected a list of module names, a regular expression or "all-linear", got {targets!r}'
        )
    return {
        "rank": rank,
        "alpha": alpha,
        "dropout": float(dropout),
        "use_rslora": bool(field("use_rslora", False)),
        "target_modules": targets,
    }


def _matches(target_modules: str | list[str], name: str) -> bool:
    """PEFT's rule: a string is a regular expression the whole module name must match; a list
    holds names the module name equals or ends with (after a dot)."""
    if isinstance(target_modules, str):
        return re.fullmatch(target_modules, name) is not None
    return any(name == t or name.endswith("." + t) for t in target_modules)


def _module_name(key: str) -> str:
    """The model's module name for a PEFT tensor key's module part (or a module path in
    target_modules): the prefix dropped, and a multimodal checkpoint's text-model path mapped
    to the text-only names the bridge uses."""
    name = key.removeprefix(PREFIX) + "."
    for prefix, native in TEXT_MODEL_PREFIXES:
        if name.startswith(prefix):
            name = native + name[len(prefix) :]
            break
    return name[:-1]


def load_adapter(model: LanguageModel, directory: str) -> dict:
    """Applies the PEFT LoRA adapter in `directory` to the model (replacing any adapters it had)
    and returns its settings: {rank, alpha, dropout, targets, seed, use_rslora?}, what
    apply_lora takes and training state records."""
    path, raw = read_adapter_config(directory)
    settings = check_config(path, raw)
    # What thinkcells can adapt: the decoder layers' projections the model offers (what
    # apply_lora wraps: every nn.Linear child so named).
    offered = tuple(model.adapter_targets)
    modules = dict(model.named_modules())
    linears = {name: m for name, m in modules.items() if isinstance(m, nn.Linear)}
    adaptable = {name for name in linears if name.rpartition(".")[2] in offered}

    def not_adapted(module: str):
        raise AdapterError(
            f"{path}: target_modules: the adapter targets {module!r}, which thinkcells does not adapt: only the "
            f"decoder layers' projections ({', '.join(offered) or 'none for this model'}) take LoRA"
        )

    target_modules = settings["target_modules"]
    if target_modules == "all-linear":
        target_modules = list(offered)
    if isinstance(target_modules, str):
        # The layers PEFT would adapt (containers it skips); a tied head is no module of the
        # bridge's model, but still what the pattern may mean.
        leaves = {n for n, m in modules.items() if isinstance(m, (nn.Linear, nn.Embedding))} | {"lm_head"}
        try:
            outside = sorted(n for n in leaves if n not in adaptable and _matches(target_modules, n))
        except re.error as e:
            raise AdapterError(
                f"{path}: target_modules: {target_modules!r} is not a valid regular expression ({e})"
            ) from None
    else:
        # Each listed name must mean decoder-layer projections (lm_head, embed_tokens do not);
        # a multimodal model's vision tower is not the bridge's (its adapters are dropped below).
        outside = [
            t
            for t in target_modules
            if not t.startswith(VISION_PREFIXES)
            and not any(_matches([t], n) or _matches([_module_name(t)], n) for n in adaptable)
        ]
    if outside:
        not_adapted(outside[0])

    weights_path = os.path.join(os.path.abspath(directory), ADAPTER_WEIGHTS)
    if not os.path.exists(weights_path):
        legacy = os.path.join(os.path.abspath(directory), "adapter_model.bin")
        extra = (
            " (adapter_model.bin, a pickle, is not read: re-save it with safetensors)" if os.path.exists(legacy) else ""
        )
        raise AdapterError(f"{weights_path} is missing{extra}")
    try:
        tensors, _ = read_safetensors(weights_path)
    except SafetensorsError as e:
        raise AdapterError(str(e)) from None

    # Which modules the file adapts: both halves of each, nothing else.
    pairs: dict[str, dict[str, tuple[str, torch.Tensor]]] = {}
    original: dict[str, str] = {}  # module name → as the file names it
    for key, tensor in tensors.items():
        match = _KEY.match(key)
        if match is None or not key.startswith(PREFIX):
            what = (
                "a DoRA magnitude"
                if "lora_magnitude_vector" in key
                else "an embedding adapter"
                if "lora_embedding" in key
                else "not a LoRA weight"
            )
            raise AdapterError(
                f"{weights_path}: unexpected tensor {key!r} ({what}; expected "
                f"{PREFIX}<module>.lora_A.weight and .lora_B.weight)"
            )
        if match["module"].removeprefix(PREFIX).startswith(VISION_PREFIXES):
            continue  # a multimodal model's vision tower: the bridge holds the text model alone
        module = _module_name(match["module"])
        pairs.setdefault(module, {})[match["which"]] = (key, tensor)
        original[module] = match["module"].removeprefix(PREFIX)
    if not pairs:
        raise AdapterError(f"{weights_path}: holds no LoRA tensors")
    for module, halves in sorted(pairs.items()):
        for which in ("lora_A", "lora_B"):
            if which not in halves:
                raise AdapterError(f"{weights_path}: tensor {PREFIX}{original[module]}.{which}.weight is missing")

    outside = sorted(set(pairs) - adaptable)
    if outside:
        not_adapted(outside[0])
    unmatched = sorted(m for m in pairs if not (_matches(target_modules, m) or _matches(target_modules, original[m])))
    if unmatched:
        raise AdapterError(
            f"{weights_path}: tensors for {original[unmatched[0]]!r}, which target_modules "
            f"{settings['target_modules']!r} in {ADAPTER_CONFIG} does not name"
        )
    names = [n for n in offered if any(m.rpartition(".")[2] == n for m in pairs)]
    # apply_lora adapts a name in every layer: an adapter covering only some layers is refused.
    missing = sorted(m for m in adaptable if m.rpartition(".")[2] in names and m not in pairs)
    if missing:
        raise AdapterError(
            f"{weights_path}: tensor {PREFIX}{missing[0]}.lora_A.weight is missing: thinkcells adapts "
            f"{missing[0].rpartition('.')[2]} in every decoder layer, this adapter only in some"
        )
    rank = settings["rank"]
    # Every shape checked before the model is touched.
    for module in sorted(pairs):
        base = linears[module]
        for which, expected in (("lora_A", (rank, base.in_features)), ("lora_B", (base.out_features, rank))):
            key, tensor = pairs[module][which]
            if tuple(tensor.shape) != expected:
                raise AdapterError(
                    f"{weights_path}: tensor {key!r} has shape {list(tensor.shape)}, expected {list(expected)} "
                    f"(r = {rank} in {ADAPTER_CONFIG}; the module is {base.out_features}×{base.in_features})"
                )
    lora = {"rank": rank, "alpha": settings["alpha"], "dropout": settings["dropout"], "targets": names, "seed": 0}
    if settings["use_rslora"]:
        lora["use_rslora"] = True
    apply_lora(model, **lora)
    layers = adapter_modules(model)
    with torch.no_grad():
        for module, halves in pairs.items():
            layers[module].lora_A.copy_(halves["lora_A"][1])
            layers[module].lora_B.copy_(halves["lora_B"][1])
    return lora
