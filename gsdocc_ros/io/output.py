"""Output files and folders written safely: refuse to overwrite unless asked, and never leave a half-written one
behind."""

from __future__ import annotations

import contextlib
import os
import shutil
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


@contextlib.contextmanager
def atomic_directory(path: str | Path, force: bool) -> Iterator[Path]:
    """Yield a fresh path to write the folder ``path`` at; moved onto ``path`` only if the block succeeds.

    The folder is built in a hidden staging folder beside ``path`` (same file system) under its final name, so files
    named after their folder (a bag's storage file, as rosbag2 names it) get their final names; on error nothing is
    left behind. An existing ``path`` is a ToolError unless ``force``, and is replaced only once the new one is
    complete.
    """
    path = Path(path)
    refuse_existing([path], force)
    staging = path.parent / f".{path.name}.partial-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        yield staging / path.name
        if path.exists() or path.is_symlink():
            old = staging / "replaced"
            os.replace(path, old)  # keep the old folder until the new one is in place
        os.replace(staging / path.name, path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
