"""Atomic file replacement: a reader (or a crash) sees the old file or the new one, never a half-written one.

Every file this project writes that a user keeps (checkpoints, images, configs, reports, exports) goes through
`atomic_write`: write a temporary file in the same folder (same file system, so the rename is atomic; POSIX
rename(2)), fsync it, then `os.replace` it over the target.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable


def atomic_write(path: Path, write: Callable[[str], object]) -> None:
    """Call write(tmp_path), fsync it, then rename over `path`: readers see the old file or the new one, never half."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file the permissions open() would
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
