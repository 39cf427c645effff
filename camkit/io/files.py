"""Files written atomically: a temporary name beside the target, then ``os.replace``."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

__all__ = ["atomic_path", "atomic_write_bytes"]


class atomic_path:
    """Context manager yielding a temporary path beside ``path``; renamed onto it on success.

    Example:
        >>> with atomic_path("out/panel.png") as tmp:
        ...     cv2.imwrite(str(tmp), image)
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    def __enter__(self) -> Path:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(
            prefix=f".{self.path.stem}.", suffix=f".tmp{self.path.suffix}", dir=self.path.parent
        )
        os.close(fd)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(name, 0o666 & ~umask)  # mkstemp makes 0600; give the file normal permissions
        self.tmp = Path(name)
        return self.tmp

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            os.replace(self.tmp, self.path)
        else:
            self.tmp.unlink(missing_ok=True)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` via a temporary file and ``os.replace``: never half-written."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)
