"""Make the gpu-bridge package importable as `thinkcells_bridge` without installing it."""

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "gpu-bridge"))
