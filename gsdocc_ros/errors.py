"""The one user-facing error of the library and the tools: bad input or a refused action, said in one line."""

from __future__ import annotations

from pathlib import Path


class ToolError(Exception):
    """A user-facing failure (missing or damaged file, unknown name, refused overwrite): printed as one line, exit
    code 2, by the `gsdocc` command."""


def require_folder(path: Path, what: str) -> None:
    """ToolError "<what> folder <path> does not exist" unless ``path`` is a folder: the same words from the library
    and from a tool that checks before its heavy imports."""
    if not path.is_dir():
        raise ToolError(f"{what} folder {path} does not exist")
