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
