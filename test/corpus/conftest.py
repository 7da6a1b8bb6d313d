"""The security and fault corpus (README.md here): the bridge package and the bridge tests'
helpers importable without installing anything."""

import pathlib
import sys

root = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(root / "gpu-bridge"))
sys.path.insert(0, str(root / "test" / "bridge"))
