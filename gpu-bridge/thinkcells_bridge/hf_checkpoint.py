"""Hugging Face model directories: config.json plus safetensors weights, either a
single model.safetensors or shards listed in model.safetensors.index.json."""

import json
import os
import re

from huggingface_hub import split_torch_state_dict_into_shards

from .safetensors import atomic_writer, read_safetensors, write_safetensors

CONFIG = "config.json"
SINGLE = "model.safetensors"
INDEX = "model.safetensors.index.json"
_SHARD_RE = re.compile(r"^model-\d{5}-of-\d{5}\.safetensors$")


class CheckpointError(ValueError):
    """A model directory is missing files or its files disagree."""


def _read_json(path, what):
    try:
        with open(path, "rb") as f:
            data = json.loads(f.read().decode("utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{path}: {what} not found") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path}: {what} is not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: {what} is not a JSON object")
    return data


def _write_json(path, data):
    with atomic_writer(path) as f:
        f.write((json.dumps(data, indent=2, sort_keys=True) + "\n").encode("utf-8"))


def read_config(model_dir):
    """Return the parsed config.json of a model directory."""
    return _read_json(os.path.join(os.fspath(model_dir), CONFIG), "model config")


def load_state_dict(model_dir):
    """Load all weights of a model directory as name -> torch.Tensor."""
    model_dir = os.fspath(model_dir)
    single = os.path.join(model_dir, SINGLE)
    index_path = os.path.join(model_dir, INDEX)
    if os.path.exists(single):
        return read_safetensors(single)[0]
    if not os.path.exists(index_path):
        raise CheckpointError(f"{model_dir}: no weights found (looked for {SINGLE} and {INDEX})")

    weight_map = _read_json(index_path, "shard index").get("weight_map")
    if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
        raise CheckpointError(f"{index_path}: 'weight_map' must map tensor names to shard files")

    by_shard = {}
    for name, shard in weight_map.items():
        by_shard.setdefault(shard, []).append(name)

    state_dict = {}
    for shard, names in by_shard.items():
        shard_path = os.path.join(model_dir, shard)
        if not os.path.exists(shard_path):
            raise CheckpointError(
                f"{index_path}: shard {shard} is missing ({shard_path}; it should hold {names[0]!r})"
            )
        tensors, _ = read_safetensors(shard_path)
        for name in names:
            if name not in tensors:
                raise CheckpointError(f"{shard_path}: tensor {name!r} is listed in {INDEX} but absent from the shard")
            state_dict[name] = tensors[name]
    return state_dict


def save_checkpoint(model_dir, config, state_dict, max_shard_bytes=None, metadata=None):
    """Write config.json and the weights of a model directory (created if needed).

    Weights go to model.safetensors, or to model-0000i-of-0000N.safetensors shards
    plus model.safetensors.index.json when their total exceeds max_shard_bytes.
    """
    model_dir = os.fspath(model_dir)
    os.makedirs(model_dir, exist_ok=True)
    metadata = {"format": "pt"} if metadata is None else metadata
    # Hugging Face's own split (the layout and index transformers write); an unlimited size
    # keeps one model.safetensors.
    split = split_torch_state_dict_into_shards(state_dict, max_shard_size=max_shard_bytes or float("inf"))
    for filename, names in split.filename_to_tensors.items():
        write_safetensors(os.path.join(model_dir, filename), {name: state_dict[name] for name in names}, metadata)
    written = set(split.filename_to_tensors)
    if split.is_sharded:
        _write_json(os.path.join(model_dir, INDEX), {"metadata": split.metadata, "weight_map": split.tensor_to_filename})
        written.add(INDEX)

    # Weights left over from an earlier save would shadow or mix with these
    # (model.safetensors wins over an index when loading), so remove them.
    for filename in os.listdir(model_dir):
        if (filename in (SINGLE, INDEX) or _SHARD_RE.match(filename)) and filename not in written:
            os.remove(os.path.join(model_dir, filename))

    _write_json(os.path.join(model_dir, CONFIG), config)
