"""Which ROS 2 library backs each seam: the genuine one where it imports, else this package's fallback.

A pip-only ROS 2 has no tf2_ros or message_filters (../shared/docs/ros2_environment.md); a full install has both.
``GSDOCC_COMPAT_FALLBACK=1`` forces the fallbacks even where the genuine libraries import (A/B on a full install).
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

FALLBACK_ENV = "GSDOCC_COMPAT_FALLBACK"
"""Environment variable: "1" forces this package's own implementations even where the genuine ones import."""

FALLBACK = "gsdocc fallback"
"""The name a seam reports when it runs on this package's own implementation."""


def genuine(module: str) -> ModuleType | None:
    """The genuine ROS 2 module ``module``, or None when it is absent or the fallback is forced."""
    if os.environ.get(FALLBACK_ENV) == "1":
        return None
    try:
        return importlib.import_module(module)
    except ImportError:
        return None
