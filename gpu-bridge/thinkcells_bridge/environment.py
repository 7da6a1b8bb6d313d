"""What the worker needs from the Python it runs on, checked at start before torch is imported:
an unfit interpreter (a user's own, through THINKCELLS_PYTHON) gets one message naming each
problem and the command that fixes it, instead of a traceback in the middle of a later cell.

The packages are those of gpu-bridge/requirements.txt, read by group; the torch versions the
bridge is tested on are declared here. Standard library only: this runs before anything else.
"""

from __future__ import annotations

import functools
import importlib.metadata
import json
import os
import re
import sys
from pathlib import Path

# CPU: the pin in requirements.txt; CUDA: the torch of the GPU machine the CUDA path is run on.
TESTED_TORCH = ("2.11", "2.13")
REQUIREMENTS = Path(__file__).resolve().parent.parent / "requirements.txt"
# Set to 1 to start on a torch older than every tested one anyway (at the user's risk).
ALLOW_OLD_TORCH = "THINKCELLS_ALLOW_UNTESTED_TORCH"

_GROUP = re.compile(r"^#\s*\[(\w+)\]")
_PIN = re.compile(r"^([A-Za-z0-9_.-]+)==(\S+)$")


class MissingPackage(RuntimeError):
    """An optional feature needs a package this interpreter lacks."""


def requirement_groups(path: Path = REQUIREMENTS) -> dict[str, dict[str, str]]:
    """{group: {distribution: pinned version}}: a group runs from its `# [name]` line to the next."""
    groups: dict[str, dict[str, str]] = {}
    current = None
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        header = _GROUP.match(line)
        if header:
            current = groups.setdefault(header.group(1), {})
        elif line and not line.startswith("#"):
            pin = _PIN.match(line)
            if pin is None or current is None:
                raise ValueError(f"{path}:{number}: expected NAME==VERSION under a '# [group]' line, got {raw!r}")
            current[pin.group(1)] = pin.group(2)
    return groups


def version_tuple(version: str) -> tuple[int, ...]:
    """(2, 13, 0) for '2.13.0+cpu' or '2.13.0a0+git…': the leading numeric release only."""
    release = re.match(r"\d+(\.\d+)*", version)
    return tuple(int(part) for part in release.group(0).split(".")) if release else ()


def installed_version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def install_command(distribution: str, pinned: str) -> str:
    return f"{sys.executable} -m pip install '{distribution}=={pinned}'"


def problems(groups: dict[str, dict[str, str]] | None = None) -> list[str]:
    """What keeps this interpreter from running the worker, each with its fix; [] when fit."""
    runtime = (groups or requirement_groups())["runtime"]
    found = {dist: installed_version(dist) for dist in runtime}
    listed = [
        f"{dist} is not installed: {install_command(dist, pin)}" for dist, pin in runtime.items() if found[dist] is None
    ]
    torch_version = found.get("torch")
    oldest = min(TESTED_TORCH, key=version_tuple)
    if (
        torch_version is not None
        and version_tuple(torch_version)[:2] < version_tuple(oldest)
        and os.environ.get(ALLOW_OLD_TORCH) != "1"
    ):
        listed.append(
            f"torch {torch_version} is older than every torch thinkcells is tested on ({', '.join(TESTED_TORCH)}): "
            f"{sys.executable} -m pip install --upgrade 'torch>={oldest}' (with your CUDA build's index URL "
            f"on a GPU machine), or set {ALLOW_OLD_TORCH}=1 to try this one anyway"
        )
    return listed


def require(distribution: str, feature: str) -> None:
    """Raises MissingPackage, naming the install command, when `feature` cannot run here."""
    if installed_version(distribution) is None:
        pinned = requirement_groups()["optional"][distribution]
        raise MissingPackage(
            f"{feature} needs the Python package {distribution}, which {sys.executable} lacks: "
            f"{install_command(distribution, pinned)}"
        )


@functools.cache
def protocol_schema() -> dict:
    """protocol.schema.json, generated from cells-lib/bridge/protocol.ts: read once, with the
    standard library alone, so the start-up check can use its exit codes."""
    return json.loads((Path(__file__).parent / "protocol.schema.json").read_text())


def exit_code(name: str) -> int:
    """An exit code declared with the protocol."""
    return protocol_schema()["exit_codes"][name]


def error_kind(name: str) -> str:
    """An error kind declared with the protocol (REMOTE_ERROR_KINDS in protocol.ts): the
    `error.type` of a failed response. A KeyError for a kind the protocol does not declare."""
    if name not in protocol_schema()["error_kinds"]:
        raise KeyError(f"error kind {name!r} is not declared in protocol.ts (REMOTE_ERROR_KINDS)")
    return name
