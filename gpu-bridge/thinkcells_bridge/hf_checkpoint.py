"""Hugging Face model directories: config.json plus safetensors weights, either a
single model.safetensors or shards listed in model.safetensors.index.json."""

import errno
import json
import os
import re
import stat

import torch
from huggingface_hub import split_torch_state_dict_into_shards

from .safetensors import atomic_writer, read_safetensors, write_safetensors
from .staging import naming

CONFIG = "config.json"
GENERATION_CONFIG = "generation_config.json"
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


def write_json(path, data):
    """A JSON file of a model directory, atomically; a full disk names the file."""
    with naming(path), atomic_writer(path) as f:
        f.write((json.dumps(data, indent=2, sort_keys=True) + "\n").encode("utf-8"))


def _inside(model_dir, real):
    """Whether the resolved path `real` lies in model_dir, or in the blobs of the Hugging Face
    cache repository whose snapshot model_dir is (the hub links snapshots/<rev>/<file> to
    ../../blobs/<hash>)."""
    real_dir = os.path.realpath(model_dir)
    if os.path.commonpath([real_dir, real]) == real_dir:
        return True
    snapshots = os.path.dirname(real_dir)
    return os.path.basename(snapshots) == "snapshots" and os.path.dirname(real) == os.path.join(
        os.path.dirname(snapshots), "blobs"
    )


def _model_file(model_dir, path):
    """Whether the model directory's file `path` exists; raises if it is anything but a readable
    regular file inside the directory. Model directories come from strangers: a symlink must
    not make the bridge read another file, nor a FIFO or device hang or flood it."""
    try:
        os.lstat(path)
    except FileNotFoundError:
        return False
    try:
        mode = os.stat(path).st_mode
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise CheckpointError(f"{path}: a symlink loop") from None
        if e.errno == errno.ENOENT:
            raise CheckpointError(f"{path}: a symlink to {os.path.realpath(path)}, which does not exist") from None
        raise CheckpointError(f"{path}: cannot be read ({e.strerror.lower()})") from None
    real = os.path.realpath(path)
    if not _inside(model_dir, real):
        raise CheckpointError(f"{path}: resolves (through a symlink) to {real}, outside the model directory")
    if stat.S_ISDIR(mode):
        raise CheckpointError(f"{path}: a directory, not a regular file")
    if not stat.S_ISREG(mode):
        kind = "FIFO" if stat.S_ISFIFO(mode) else "socket" if stat.S_ISSOCK(mode) else "device"
        raise CheckpointError(f"{path}: a {kind}, not a regular file")
    try:
        open(path, "rb").close()
    except OSError as e:
        raise CheckpointError(f"{path}: cannot be read ({e.strerror.lower()})") from None
    return True


def _shard_path(model_dir, index_path, shard):
    """A shard the index names, as a path inside the model directory."""
    if os.path.isabs(shard):
        raise CheckpointError(
            f"{index_path}: shard {shard!r} is an absolute path; shards must lie inside the model directory"
        )
    if os.path.normpath(shard).split(os.sep)[0] == os.pardir:
        raise CheckpointError(f"{index_path}: shard {shard!r} lies outside the model directory")
    return os.path.join(model_dir, shard)


def _check_finite(path, tensors):
    """NaN or Inf weights (a diverged run, a broken conversion) load without complaint and then
    make every logit NaN: sampling repeats one token. Checked in chunks, so no tensor-sized mask."""
    for name, t in tensors.items():
        if t.is_floating_point() and not all(bool(torch.isfinite(c).all()) for c in t.reshape(-1).split(1 << 24)):
            raise CheckpointError(
                f"{path}: tensor {name!r} has {int(t.isnan().sum())} NaN and {int(t.isinf().sum())} Inf values "
                f"(of {t.numel()}); loadModel with allowNonFinite: true loads it anyway"
            )


def read_config(model_dir):
    """Return the parsed config.json of a model directory."""
    path = os.path.join(os.fspath(model_dir), CONFIG)
    _model_file(model_dir, path)  # absent: _read_json says "not found"
    return _read_json(path, "model config")


def load_state_dict(model_dir, allow_non_finite=False):
    """Load all weights of a model directory as name -> torch.Tensor; NaN or Inf in them is an
    error unless allowed."""
    model_dir = os.fspath(model_dir)
    single = os.path.join(model_dir, SINGLE)
    index_path = os.path.join(model_dir, INDEX)
    if _model_file(model_dir, single):
        tensors = read_safetensors(single)[0]
        if not allow_non_finite:
            _check_finite(single, tensors)
        return tensors
    if not _model_file(model_dir, index_path):
        raise CheckpointError(f"{model_dir}: no weights found (looked for {SINGLE} and {INDEX})")

    weight_map = _read_json(index_path, "shard index").get("weight_map")
    if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
        raise CheckpointError(f"{index_path}: 'weight_map' must map tensor names to shard files")

    by_shard = {}
    for name, shard in weight_map.items():
        by_shard.setdefault(shard, []).append(name)

    state_dict = {}
    for shard, names in by_shard.items():
        shard_path = _shard_path(model_dir, index_path, shard)
        if not _model_file(model_dir, shard_path):
            raise CheckpointError(f"{index_path}: shard {shard} is missing ({shard_path}; it should hold {names[0]!r})")
        tensors, _ = read_safetensors(shard_path)
        for name in names:
            if name not in tensors:
                raise CheckpointError(f"{shard_path}: tensor {name!r} is listed in {INDEX} but absent from the shard")
            state_dict[name] = tensors[name]
        if not allow_non_finite:
            _check_finite(shard_path, {name: tensors[name] for name in names})
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
        write_json(os.path.join(model_dir, INDEX), {"metadata": split.metadata, "weight_map": split.tensor_to_filename})
        written.add(INDEX)

    # Weights left over from an earlier save would shadow or mix with these
    # (model.safetensors wins over an index when loading), so remove them.
    for filename in os.listdir(model_dir):
        if (filename in (SINGLE, INDEX) or _SHARD_RE.match(filename)) and filename not in written:
            os.remove(os.path.join(model_dir, filename))

    write_json(os.path.join(model_dir, CONFIG), config)
