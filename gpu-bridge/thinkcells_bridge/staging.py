"""Staging: the temporary files and directories a save writes before renaming them into place.

Their names carry the writer's pid, so what a killed process left behind can be told from a
live process's work: the next save removes the first and never touches the second (the same
rule as cells-lib/util/atomic.ts).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import uuid


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):
        return False
    except PermissionError:  # another user's process
        return True
    return True


def remove_stale(directory, pattern: str) -> None:
    """Removes the entries of `directory` that fully match `pattern` (group "pid": the writer's)
    and whose writer has exited. Only this user's: another user's staging is theirs to clean,
    and on a shared mount their pids are not ours to judge. Best effort: a leftover that cannot
    be removed must not fail the save that found it."""
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return
    compiled = re.compile(pattern)
    for name in names:
        match = compiled.fullmatch(name)
        if match is None or pid_alive(int(match["pid"])):
            continue
        path = os.path.join(directory, name)
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            continue
        if st.st_uid != os.getuid():
            continue
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                os.remove(path)


@contextlib.contextmanager
def naming(path):
    """Re-raises an OSError that names no file (a write's or fsync's ENOSPC) naming `path`."""
    try:
        yield
    except OSError as e:
        if e.errno is None or e.filename is not None:
            raise
        raise OSError(e.errno, e.strerror, str(path)) from e


def fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def replace_directory(target: str, exists: bool, write) -> None:
    """Builds a directory whole or not at all: write(tmp) fills a fresh temporary sibling of
    `target`, which is then renamed into place (replacing what is there, which `exists` says,
    only once the new one is complete). What a killed writer left is removed by the next one."""
    parent, base = os.path.split(target)
    os.makedirs(parent, exist_ok=True)
    remove_stale(parent, rf"\.{re.escape(base)}\.(?:tmp|old)-(?P<pid>\d+)-[0-9a-f]+")
    suffix = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp = os.path.join(parent, f".{base}.tmp-{suffix}")
    old = os.path.join(parent, f".{base}.old-{suffix}")
    os.mkdir(tmp)
    try:
        with naming(tmp):  # a write that names no file names the directory
            write(tmp)
        fsync_dir(tmp)
        if exists:
            os.rename(target, old)
        try:
            os.rename(tmp, target)
        except BaseException:
            if exists:
                os.rename(old, target)
            raise
        fsync_dir(parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(old, ignore_errors=True)


def check_replaceable(target: str, marker: str, kind: str, error: type[Exception]) -> bool:
    """Whether `target` exists. An existing directory is only replaced when it is empty or is a
    `kind` directory (holds `marker`): a save never deletes unrelated files."""
    if not os.path.lexists(target):
        return False
    if not os.path.isdir(target) or os.path.islink(target):
        raise error(f"{target} exists and is not a directory")
    if os.listdir(target) and not os.path.exists(os.path.join(target, marker)):
        raise error(
            f"{target} is a non-empty directory that is not {kind} directory (no {marker}); "
            f"refusing to replace it: write to a new or empty directory"
        )
    return True
