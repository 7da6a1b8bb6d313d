"""The bridge's start-up check of its interpreter (environment.py) and the requirements file."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from thinkcells_bridge import environment
from thinkcells_bridge.environment import TESTED_TORCH, exit_code, problems, requirement_groups, version_tuple

BRIDGE = Path(__file__).resolve().parents[2] / "gpu-bridge"


def test_requirements_declare_the_runtime_and_a_tested_torch():
    groups = requirement_groups()
    assert set(groups) >= {"runtime", "optional", "test", "notebook"}
    assert set(groups["runtime"]) == {"torch", "numpy", "safetensors", "huggingface_hub", "jsonschema"}
    pinned = ".".join(map(str, version_tuple(groups["runtime"]["torch"])[:2]))
    assert pinned in TESTED_TORCH


def test_the_project_environment_is_fit():
    assert problems() == []


def test_a_malformed_requirements_line_names_file_and_line(tmp_path):
    bad = tmp_path / "requirements.txt"
    bad.write_text("# [runtime]\ntorch==2.13.0\nnumpy>=2\n")
    with pytest.raises(ValueError, match=r"requirements.txt:3: expected NAME==VERSION .*'numpy>=2'"):
        requirement_groups(bad)


@pytest.mark.parametrize(
    "version,expected", [("2.13.0+cpu", (2, 13, 0)), ("2.11.0a0+git1234", (2, 11, 0)), ("2.9", (2, 9)), ("nightly", ())]
)
def test_version_tuple_reads_the_release(version, expected):
    assert version_tuple(version) == expected


def fake_distributions(root: Path, versions: dict[str, str]) -> Path:
    """dist-info directories alone: what importlib.metadata reads, with no code behind them."""
    for name, version in versions.items():
        info = root / f"{name}-{version}.dist-info"
        info.mkdir(parents=True)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    return root


def start_bridge(tmp_path, python_path: str, **env):
    """`python -S -m thinkcells_bridge`: no site-packages, so only PYTHONPATH's packages exist."""
    return subprocess.run(
        [sys.executable, "-S", "-m", "thinkcells_bridge", "--session", "env", "--dir", str(tmp_path / "run")],
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(BRIDGE), python_path]), **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_an_interpreter_without_packages_is_refused_with_each_install_command(tmp_path):
    result = start_bridge(tmp_path, "")
    assert result.returncode == exit_code("unfit_environment"), result.stderr
    runtime = requirement_groups()["runtime"]
    for name, pinned in runtime.items():
        assert f"- {name} is not installed: {sys.executable} -m pip install '{name}=={pinned}'" in result.stderr
    assert not (tmp_path / "run").exists()  # refused before it made anything


def test_an_old_torch_is_refused_unless_allowed(tmp_path):
    runtime = dict(requirement_groups()["runtime"], torch="2.1.2")
    site = fake_distributions(tmp_path / "site", runtime)
    result = start_bridge(tmp_path, str(site))
    assert result.returncode == exit_code("unfit_environment")
    lines = [line for line in result.stderr.splitlines() if line.startswith("- ")]
    assert len(lines) == 1 and lines[0].startswith(
        "- torch 2.1.2 is older than every torch thinkcells is tested on (2.11, 2.13)"
    )
    assert "pip install --upgrade 'torch>=2.11'" in lines[0] and "THINKCELLS_ALLOW_UNTESTED_TORCH=1" in lines[0]

    allowed = start_bridge(tmp_path, str(site), THINKCELLS_ALLOW_UNTESTED_TORCH="1")
    # Past the check, the fake torch (metadata without code) is what fails to import.
    assert allowed.returncode != exit_code("unfit_environment") and "No module named 'torch'" in allowed.stderr


def test_a_newer_torch_than_tested_is_accepted(monkeypatch):
    monkeypatch.setattr(environment, "installed_version", lambda name: "2.20.0" if name == "torch" else "1.0")
    assert problems() == []


def test_an_optional_feature_names_its_package_and_command(monkeypatch):
    monkeypatch.setattr(environment, "installed_version", lambda name: None)
    pinned = requirement_groups()["optional"]["onnx"]
    with pytest.raises(
        environment.MissingPackage,
        match=rf"ONNX export needs the Python package onnx, .* -m pip install 'onnx=={pinned}'",
    ):
        environment.require("onnx", "ONNX export")
