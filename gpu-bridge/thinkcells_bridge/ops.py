"""The bridge's operations: one function per protocol op, on the worker's state.

Bodies arrive validated (protocol.schema.json) with TensorRefs already turned into tensors.
Each handler returns the response body; tensors in it travel as binary.
"""

from __future__ import annotations

import dataclasses
import os
import resource
import threading
import time
from dataclasses import dataclass, field

import torch

from .convert_llama2c import write_llama2c_as_hf
from .export import (
    ONNX_FILE,
    export_config,
    export_dtype,
    generation_config,
    lora_summary,
    merged_state_dict,
    write_export,
)
from .hf_checkpoint import read_config, save_checkpoint
from .language_model import LanguageModel
from .loading import count_parameters, load_model, pick_dtype
from .lora import apply_lora, has_lora, remove_lora, set_adapters
from .native_kernels import native_library, torch_blas
from .onnx_export import check_exportable, export_onnx, plain_fp32_model
from .optim import AdamWConfig, Trainer
from .peft_adapter import load_adapter, save_adapter
from .quant import memory_bytes, quantization, quantize_base
from .sampling import Cancelled, SampleParams, sample, sequence_logprobs
from .state import load_state, read_state_meta, save_state
from .training import forward, forward_backward, pack, token_logprobs


class OpError(ValueError):
    """A request the bridge understood but cannot carry out (unknown model, bad ids, ...)."""


@dataclass
class LoadedModel:
    name: str
    path: str
    model: LanguageModel
    hf_config: dict  # as loaded, so saving does not depend on the source directory surviving
    # The client that loaded it: another may load over its name only with replace. None once
    # that client has gone, so a restarted kernel reloads without asking.
    holder: str | None = None
    # One request at a time per model: sampling and training share the weights.
    lock: threading.Lock = field(default_factory=threading.Lock)
    lora: dict | None = None  # the adapters' settings, saved with training state
    sharded: bool = False  # FSDP2 across the bridge's ranks (distributed.py)
    trainer: Trainer = field(init=False)

    def __post_init__(self):
        self.trainer = Trainer(self.model)


@dataclass
class RequestContext:
    request_id: int
    cancel_event: threading.Event
    client: str  # who sent it: the hello's client name and the connection's number

    def cancelled(self) -> bool:
        return self.cancel_event.is_set()


class Worker:
    world_size = 1  # ranks running the ops (distributed.py's DistributedWorker: more)

    def __init__(self, session: str, device: torch.device):
        self.session = session
        self.device = device
        self.models: dict[str, LoadedModel] = {}
        self.models_lock = threading.Lock()
        self.started = time.time()
        # Prompt token positions every sample call's prefill ran (status): one per distinct
        # prompt token, not per sample, where samples share their prompt's prefill.
        self.prefill_tokens = 0
        self.counters_lock = threading.Lock()

    def client_gone(self, client: str) -> None:
        """The connection `client` names has closed: what it held is free for others."""
        with self.models_lock:
            models = list(self.models.values())
            for loaded in models:
                if loaded.holder == client:
                    loaded.holder = None  # its name may be loaded over
        for loaded in models:
            # Unlocked first, so a closing connection waits on no one else's request; again under the lock.
            if loaded.trainer.holder == client:
                with loaded.lock:
                    if loaded.trainer.holder == client:
                        loaded.trainer.discard_cycle()  # half a cycle's gradients: nobody will step them

    # -- helpers -----------------------------------------------------------------------------

    def get(self, name: str) -> LoadedModel:
        with self.models_lock:
            loaded = self.models.get(name)
            known = sorted(self.models)
        if loaded is None:
            raise OpError(
                f"no model named {name!r} is loaded"
                + (f" (loaded: {', '.join(known)})" if known else " (none is loaded)")
            )
        return loaded

    def info(self, loaded: LoadedModel) -> dict:
        config = loaded.model.config
        total, trainable = count_parameters(loaded.model)
        weight = loaded.model.output_weight()
        return {
            "name": loaded.name,
            "path": loaded.path,
            "model_type": config.model_type,
            "backend": loaded.model.backend,
            "lora_targets": list(loaded.model.adapter_targets),
            "device": str(weight.device),
            "dtype": str(weight.dtype).removeprefix("torch."),
            "vocab_size": config.vocab_size,
            "hidden_size": config.hidden_size,
            "num_hidden_layers": config.num_hidden_layers,
            "num_attention_heads": config.num_attention_heads,
            "num_key_value_heads": config.num_key_value_heads,
            "max_position_embeddings": config.max_position_embeddings,
            "rope_scaling": None if config.rope_scaling is None else dataclasses.asdict(config.rope_scaling),
            "quantization": quantization(loaded.model),
            "lora": loaded.lora if has_lora(loaded.model) else None,
            "value_head": loaded.model.value_head is not None,
            "sharded": loaded.sharded,
            "weight_bytes": memory_bytes(loaded.model)["stored"],
            "tie_word_embeddings": config.tie_word_embeddings,
            "bos_token_id": config.bos_token_id,
            "eos_token_ids": list(config.eos_token_ids),
            "parameters": total,
            "trainable_parameters": trainable,
        }

    def _check_ids(self, loaded: LoadedModel, ids: torch.Tensor, what: str) -> None:
        vocab = loaded.model.config.vocab_size
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= vocab):
            bad = int(ids.max()) if int(ids.max()) >= vocab else int(ids.min())
            raise OpError(f"{what}: token id {bad} is outside the model's vocabulary (0..{vocab - 1})")

    @staticmethod
    def _check_context(loaded: LoadedModel, length: int, what: str) -> None:
        """Past its trained context a model still runs (RoPE extends) but produces noise: refuse."""
        limit = loaded.model.config.max_position_embeddings
        if length > limit:
            raise OpError(
                f"{what} needs {length} positions, more than the model's context of {limit}; "
                f"load it with RoPE scaling for a longer context (loadModel ropeScaling)"
            )

    @staticmethod
    def _split(flat: torch.Tensor, lengths: torch.Tensor, what: str) -> list[torch.Tensor]:
        sizes = lengths.tolist()
        if any(n < 1 for n in sizes):
            raise OpError(f"{what}: every sequence needs at least one token")
        if sum(sizes) != flat.numel():
            raise OpError(f"{what}: lengths add up to {sum(sizes)} but {flat.numel()} ids were sent")
        return list(torch.split(flat.to(torch.long), sizes))

    # -- ops -----------------------------------------------------------------------------------

    def ping(self, body, ctx):
        return {}

    def echo(self, body, ctx):
        return {"tensors": body["tensors"]}

    def status(self, body, ctx):
        cuda = self.device.type == "cuda"
        with self.models_lock:
            models = list(self.models.values())
        return {
            "device": str(self.device),
            "default_dtype": str(pick_dtype("auto", self.device)).removeprefix("torch."),
            "torch_version": torch.__version__,
            "threads": torch.get_num_threads(),
            "torch_blas": torch_blas(),
            "native_blas": native[1].source if (native := native_library()) else None,
            "memory": {
                # ru_maxrss is in KiB on Linux: the peak, which is what limits a machine.
                "rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                "cuda_allocated_bytes": torch.cuda.memory_allocated(self.device) if cuda else None,
                "cuda_reserved_bytes": torch.cuda.memory_reserved(self.device) if cuda else None,
                "cuda_total_bytes": torch.cuda.get_device_properties(self.device).total_memory if cuda else None,
            },
            "models": [self.info(m) for m in models],
            "prefill_tokens": self.prefill_tokens,
            "uptime_s": time.time() - self.started,
            "world_size": self.world_size,
        }

    def _check_name_free(self, body, ctx) -> None:
        """Loading over a model another client loaded would swap it out from under that client
        (mid-training): refused unless the request says replace. Call holding models_lock."""
        current = self.models.get(body["name"])
        if current is not None and current.holder not in (None, ctx.client) and not body["replace"]:
            raise OpError(
                f"model name {body['name']!r} is held by {current.holder}, which loaded {current.path} "
                f"under it; load under another name, or with replace: true to replace it"
            )

    def load_model(self, body, ctx):
        path = os.path.abspath(body["path"])
        with self.models_lock:
            self._check_name_free(body, ctx)  # before the work of loading
        model = load_model(
            path, self.device, pick_dtype(body["dtype"], self.device), body["rope_scaling"], body["allow_non_finite"]
        )
        if body["quantize"] is not None:
            quantize_base(model, body["quantize"])
        loaded = LoadedModel(body["name"], path, model, read_config(path), holder=ctx.client)
        with self.models_lock:
            self._check_name_free(body, ctx)  # again: another client may have loaded it meanwhile
            # A client that left while this loaded has had client_gone already: the model would
            # stay held by no one who can use it.
            if ctx.cancelled():
                raise Cancelled("load_model was cancelled")
            self.models[body["name"]] = loaded
        return self.info(loaded)

    def unload_model(self, body, ctx):
        with self.models_lock:
            removed = self.models.pop(body["name"], None)
        if removed is not None and self.device.type == "cuda":
            torch.cuda.empty_cache()
        return {"unloaded": removed is not None}

    def save_model(self, body, ctx):
        loaded = self.get(body["name"])
        with loaded.lock:
            # The base model's own tensors: adapters and the value head are training state
            # (save_state); merging adapters into an export is the export cell's job.
            weights = {
                k: v
                for k, v in loaded.model.state_dict().items()
                if "lora_" not in k and not k.startswith("value_head.")
            }
            save_checkpoint(body["out_dir"], loaded.hf_config, weights, max_shard_bytes=body["max_shard_bytes"])
        return {"files": sorted(os.listdir(body["out_dir"]))}

    def export_model(self, body, ctx):
        loaded = self.get(body["model"])
        if body["onnx"] is not None:
            check_exportable(loaded.model)
        with loaded.lock:
            # Only the snapshot needs the model: files are written from copies, so a training
            # loop can go on (and the live model keeps its adapters and optimizer state).
            dtype = export_dtype(body["dtype"], loaded.model)
            weights, merged = merged_state_dict(loaded.model, dtype)
            config = export_config(loaded.hf_config, loaded.model, dtype)
            model_config, lora = loaded.model.config, loaded.lora
        if ctx.cancelled():
            raise Cancelled("export_model was cancelled")
        onnx_report: dict = {}

        def write_onnx(path: str) -> None:
            fp32 = weights if dtype == torch.float32 else {k: v.float() for k, v in weights.items()}
            onnx_report.update(export_onnx(plain_fp32_model(model_config, fp32), path, body["onnx"]["opset"]))

        files = write_export(
            body["dir"],
            config,
            weights,
            generation_config(loaded.path, loaded.hf_config),
            shard_bytes=body["shard_bytes"],
            metadata=body["metadata"],
            onnx=write_onnx if body["onnx"] is not None else None,
        )
        directory = os.path.abspath(body["dir"])
        onnx = None
        if onnx_report:
            onnx = {
                "path": os.path.join(directory, ONNX_FILE),
                "opset": onnx_report["opset"],
                "bytes": onnx_report["bytes"],
                "max_abs_diff": onnx_report["max_abs_diff"],
            }
        return {
            "dir": directory,
            "files": files,
            "dtype": str(dtype).removeprefix("torch."),
            "parameters": sum(t.numel() for t in weights.values()),
            "weight_bytes": sum(t.numel() * t.element_size() for t in weights.values()),
            "lora": lora_summary(lora, merged),
            "onnx": onnx,
        }

    def export_onnx(self, body, ctx):
        loaded = self.get(body["model"])
        check_exportable(loaded.model)
        with loaded.lock:
            weights, _ = merged_state_dict(loaded.model, torch.float32)
            model_config = loaded.model.config
        report = export_onnx(plain_fp32_model(model_config, weights), body["path"], body["opset"])
        return {
            "path": report["path"],
            "opset": report["opset"],
            "bytes": report["bytes"],
            "max_abs_diff": report["max_abs_diff"],
        }

    def convert_llama2c(self, body, ctx):
        config = write_llama2c_as_hf(body["bin_path"], body["out_dir"])
        return {"config": config, "files": sorted(os.listdir(body["out_dir"]))}

    def sample(self, body, ctx):
        loaded = self.get(body["model"])
        prompts = self._split(body["prompt_ids"], body["prompt_lengths"], "prompt_ids")
        self._check_ids(loaded, body["prompt_ids"], "prompt_ids")
        self._check_context(
            loaded, max(len(p) for p in prompts) + body["max_new_tokens"], "sample (longest prompt + max_new_tokens)"
        )
        params = SampleParams(
            n=body["n"],
            max_new_tokens=body["max_new_tokens"],
            temperature=body["temperature"],
            top_p=body["top_p"],
            top_k=body["top_k"],
            stop_token_ids=tuple(body["stop_token_ids"]),
            seed=body["seed"],
            use_cache=body["use_cache"],
            entropy=body["entropy"],
        )
        with loaded.lock:
            result = sample(loaded.model, prompts, params, ctx.cancelled)
        with self.counters_lock:
            self.prefill_tokens += result.prefill_tokens
        return {
            "tokens": result.tokens,
            "lengths": result.lengths,
            "logprobs": result.logprobs,
            "stop_reasons": result.stop_reasons,
            "prefill_tokens": result.prefill_tokens,
            "entropies": result.entropies,
        }

    def logprobs(self, body, ctx):
        loaded = self.get(body["model"])
        sequences = self._split(body["token_ids"], body["lengths"], "token_ids")
        self._check_ids(loaded, body["token_ids"], "token_ids")
        self._check_context(loaded, max(len(s) for s in sequences), "logprobs (longest sequence)")
        with loaded.lock:
            scores = sequence_logprobs(loaded.model, sequences, body["temperature"])
        return {"logprobs": torch.cat(scores) if scores else torch.zeros(0)}

    # -- training ------------------------------------------------------------------------------

    def apply_lora(self, body, ctx):
        loaded = self.get(body["model"])
        with loaded.lock:
            config = {k: body[k] for k in ("rank", "alpha", "dropout", "targets", "seed")}
            apply_lora(loaded.model, **config)
            if loaded.model.value_head is not None:
                loaded.model.value_head.requires_grad_(True)  # the critic trains in full
            loaded.lora = config
            loaded.trainer = Trainer(loaded.model)  # new parameters: new optimizer state
        return self.info(loaded)

    def save_adapter(self, body, ctx):
        loaded = self.get(body["model"])
        if loaded.lora is None or not has_lora(loaded.model):
            raise OpError(f"model {loaded.name!r} has no LoRA adapters to save (apply_lora or load_adapter first)")
        base = body["base_model_name_or_path"] or loaded.path
        with loaded.lock:
            # A multimodal checkpoint's text model: the adapter is for the whole model, as peft sees it.
            multimodal = loaded.model.backend == "native" and isinstance(loaded.hf_config.get("text_config"), dict)
            files, tensors = save_adapter(loaded.model, loaded.lora, body["dir"], base, multimodal)
            settings = dict(loaded.lora)
        return {
            "dir": os.path.abspath(body["dir"]),
            "files": files,
            "settings": settings,
            "dtype": str(next(iter(tensors.values())).dtype).removeprefix("torch."),
            "parameters": sum(t.numel() for t in tensors.values()),
            "weight_bytes": sum(t.numel() * t.element_size() for t in tensors.values()),
        }

    def load_adapter(self, body, ctx):
        loaded = self.get(body["model"])
        with loaded.lock:
            loaded.lora = load_adapter(loaded.model, body["dir"])
            if loaded.model.value_head is not None:
                loaded.model.value_head.requires_grad_(True)  # the critic trains in full
            loaded.trainer = Trainer(loaded.model)  # new parameters: new optimizer state
        return self.info(loaded)

    def remove_lora(self, body, ctx):
        loaded = self.get(body["model"])
        with loaded.lock:
            remove_lora(loaded.model)
            loaded.lora = None
            loaded.trainer = Trainer(loaded.model)
        return self.info(loaded)

    def add_value_head(self, body, ctx):
        loaded = self.get(body["model"])
        with loaded.lock:
            loaded.model.add_value_head()
            loaded.trainer = Trainer(loaded.model)  # new parameters: new optimizer state
        return self.info(loaded)

    def values(self, body, ctx):
        loaded = self.get(body["model"])
        self._check_ids(loaded, body["token_ids"], "token_ids")
        with loaded.lock, torch.inference_mode():
            ids = pack(body["token_ids"], body["lengths"], loaded.model.output_weight().device)
            values = token_logprobs(loaded.model, ids, with_entropy=False, with_values=True)[2]
        return {"values": torch.cat([values[row, : n - 1] for row, n in enumerate(body["lengths"].tolist())]).cpu()}

    def set_adapters(self, body, ctx):
        loaded = self.get(body["model"])
        if not has_lora(loaded.model):
            raise OpError(f"model {loaded.name!r} has no LoRA adapters (apply_lora first)")
        with loaded.lock:
            set_adapters(loaded.model, body["enabled"])
        return {"enabled": body["enabled"]}

    def _check_loss_batch(self, loaded: LoadedModel, body, op: str) -> None:
        spec = body["loss"]
        needs_reference = (spec["kind"] == "dpo" and spec["ref_logprobs"] is None) or (
            spec["kind"] == "policy_gradient" and spec["beta"] > 0
        )
        if needs_reference and not has_lora(loaded.model):
            raise OpError(
                f"{spec['kind']} with a reference policy needs LoRA adapters: "
                "the reference is the model with them off (apply_lora first)"
            )
        self._check_ids(loaded, body["token_ids"], "token_ids")
        if body["lengths"].numel():
            self._check_context(loaded, int(body["lengths"].max()), f"{op} (longest sequence)")

    def forward(self, body, ctx):
        loaded = self.get(body["model"])
        self._check_loss_batch(loaded, body, "forward")
        with loaded.lock:
            return forward(loaded.model, body)

    def forward_backward(self, body, ctx):
        loaded = self.get(body["model"])
        self._check_loss_batch(loaded, body, "forward_backward")
        with loaded.lock:
            self._check_cycle(loaded, ctx)
            # A client that left while this waited for the lock has had client_gone already: a
            # cycle it started now would hold the model for ever.
            if ctx.cancelled():
                raise Cancelled("forward_backward was cancelled before it started")
            result = forward_backward(loaded.model, loaded.trainer, body)
            loaded.trainer.holder = ctx.client
            return result

    @staticmethod
    def _check_cycle(loaded: LoadedModel, ctx: RequestContext) -> None:
        """Gradients accumulate from a client's first forward_backward until its optim_step: a
        second client's forward_backward, optim_step or reset in between would mix or lose them."""
        holder = loaded.trainer.holder
        if holder is not None and holder != ctx.client:
            raise OpError(
                f"model {loaded.name!r} is mid-cycle for {holder} (it has run forward_backward and not yet "
                f"optim_step); another client ({ctx.client}) cannot join that cycle: wait for its optim_step "
                f"or reset_optimizer, or for it to disconnect"
            )

    def reset_optimizer(self, body, ctx):
        loaded = self.get(body["model"])
        with loaded.lock:
            self._check_cycle(loaded, ctx)
            old = loaded.trainer
            loaded.model.zero_grad(set_to_none=True)
            loaded.trainer = Trainer(loaded.model, rng=old.rng, cuda_rng=old.cuda_rng)
        return {"step": loaded.trainer.step}

    def discard_gradients(self, body, ctx):
        loaded = self.get(body["model"])
        with loaded.lock:
            self._check_cycle(loaded, ctx)
            pending = loaded.trainer.holder is not None
            loaded.trainer.discard_cycle()
        return {"discarded": pending}

    def optim_step(self, body, ctx):
        loaded = self.get(body["model"])
        config = AdamWConfig(
            lr=body["lr"],
            betas=(body["beta1"], body["beta2"]),
            eps=body["eps"],
            weight_decay=body["weight_decay"],
            max_grad_norm=body["max_grad_norm"],
        )
        with loaded.lock:
            self._check_cycle(loaded, ctx)
            return loaded.trainer.optim_step(config)

    def save_state(self, body, ctx):
        loaded = self.get(body["model"])
        with loaded.lock:
            files = save_state(body["dir"], loaded.trainer, loaded.lora, loaded.model.value_head is not None)
        return {"files": files, "step": loaded.trainer.step}

    def load_state(self, body, ctx):
        loaded = self.get(body["model"])
        path, meta = read_state_meta(body["dir"])
        with loaded.lock:
            # The state names its adapters and value head: re-create them (a fresh bridge has none).
            if meta["lora"] != loaded.lora:
                if meta["lora"] is None:
                    remove_lora(loaded.model)
                else:
                    apply_lora(loaded.model, **meta["lora"])
                loaded.lora = meta["lora"]
            if meta["value_head"] and loaded.model.value_head is None:
                loaded.model.add_value_head()
            if loaded.model.value_head is not None:
                loaded.model.value_head.requires_grad_(True)
            loaded.trainer = Trainer(loaded.model)
            load_state(path, meta, loaded.trainer)
        return {"step": loaded.trainer.step, "model": self.info(loaded)}
