"""A checkpoint file looked at before torch reads it: missing, a directory, empty, or neither a zip archive nor a
pickle, each refused in one line that says what was found and what to give instead.

It imports no torch, so the tools refuse a wrong --checkpoint at once; the loader (checkpoint.py) runs the same
check, so the node and every verb say the same thing.
"""

from __future__ import annotations

import pickle
import pickletools
import zipfile
from pathlib import Path

from gsdocc_ros.errors import ToolError

ZIP_MAGIC = b"PK\x03\x04"
"""First bytes of a zip archive: torch.save's format since torch 1.6."""
PICKLE_PROTO = 0x80
"""First byte of a pickle of protocol 2 or newer: torch.save's legacy format (and mmcv's older files)."""
PICKLE_OPCODES = frozenset(op.code.encode("latin-1")[0] for op in pickletools.opcodes)
"""Every byte that is a pickle opcode; any other byte where an opcode should be means the data is not a pickle."""
ZIP_PICKLE = "data.pkl"
"""The pickle inside a torch zip archive, at <archive name>/data.pkl."""
CHECKPOINT_FIX = "give the .pth file written by torch.save (copy or download it again if it was cut short)"


class CheckpointError(ToolError, RuntimeError):
    """A checkpoint could not be read, or its keys or shapes do not match the model (one line, for the user)."""


def _first_bytes(path: Path, count: int = 16) -> bytes:
    """The first ``count`` bytes of ``path``; CheckpointError when the file cannot be opened."""
    try:
        with path.open("rb") as stream:
            return stream.read(count)
    except OSError as error:
        raise CheckpointError(f"checkpoint {path}: cannot be read ({error.strerror or error})") from None


def check_checkpoint_file(path: Path) -> str:
    """Which torch format ``path`` is in, "zip" or "pickle", judged from its bytes without unpickling anything.

    CheckpointError naming the problem and the fix for a missing path, a directory or device, an empty file, a damaged
    zip, a zip that is not a torch checkpoint, and bytes that are neither a zip archive nor a pickle.
    """
    if path.is_dir():
        inside = sorted(p.name for p in path.glob("*.pth"))[:3]
        hint = f" (it holds {', '.join(inside)})" if inside else ""
        raise CheckpointError(f"checkpoint {path} is a directory{hint}; expected the .pth file itself")
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist; check the path of the .pth file")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} is not a regular file (a device or a pipe); expected the .pth file")
    size = path.stat().st_size
    if size == 0:
        raise CheckpointError(f"checkpoint {path} is empty (0 bytes); {CHECKPOINT_FIX}")
    head = _first_bytes(path)
    if head.startswith(ZIP_MAGIC):
        try:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
        except (zipfile.BadZipFile, OSError) as error:
            raise CheckpointError(f"checkpoint {path} is a damaged or truncated zip archive ({size:,} bytes: "
                                  f"{error}); {CHECKPOINT_FIX}") from None
        if not any(name.endswith(f"/{ZIP_PICKLE}") for name in names):
            raise CheckpointError(f"checkpoint {path} is a zip archive but not a torch checkpoint (no {ZIP_PICKLE} "
                                  f"among its {len(names)} entries, e.g. {', '.join(names[:3]) or 'none'}); "
                                  f"{CHECKPOINT_FIX}")
        return "zip"
    if len(head) > 1 and head[0] == PICKLE_PROTO and 2 <= head[1] <= pickle.HIGHEST_PROTOCOL:
        return "pickle"
    raise CheckpointError(f"checkpoint {path} is not a torch checkpoint: neither a zip archive nor a pickle "
                          f"({size:,} bytes, starting {head!r}); {CHECKPOINT_FIX}")

