"""A converted llama2.c model stops where llama2.c does: its generation config lists BOS with
EOS, and an export of it keeps that."""

import json
import pathlib

from thinkcells_bridge.convert_llama2c import write_llama2c_as_hf
from thinkcells_bridge.export import generation_config
from thinkcells_bridge.hf_checkpoint import GENERATION_CONFIG, read_config

BIN = pathlib.Path(__file__).resolve().parents[2] / "assets" / "stories260K" / "stories260K.bin"


def test_converted_directory_stops_at_eos_and_bos(tmp_path):
    out = tmp_path / "hf"
    config = write_llama2c_as_hf(BIN, out)
    gen = json.loads((out / GENERATION_CONFIG).read_text())
    assert gen == {"bos_token_id": 1, "eos_token_id": [2, 1]}
    # config.json keeps the tokenizer's EOS alone; stopping is the generation config's business.
    assert read_config(out)["eos_token_id"] == config["eos_token_id"] == 2
    # An export copies the source's generation config, so the exported model stops there too.
    assert generation_config(str(out), config)["eos_token_id"] == [2, 1]
