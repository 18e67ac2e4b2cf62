"""Output files written safely: refuse to overwrite unless asked, and never leave a half-written file behind."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from gsdocc_ros.errors import ToolError


def refuse_existing(paths: Iterable[Path], force: bool) -> None:
    """ToolError naming the first output that exists, unless ``force`` allows overwriting."""
    if force:
        return
    for path in paths:
        if path.exists():
            raise ToolError(f"{path} exists; pass --force to overwrite it")


@contextlib.contextmanager
def atomic_output(path: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling of ``path`` to write; renamed onto ``path`` only if the block succeeds."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


