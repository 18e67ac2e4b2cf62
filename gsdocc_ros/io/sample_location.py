"""Where the real nuScenes / Occ3D sample folder lies: one answer for the tests, the bench and the benchmarks.

Import-light on purpose (the bench's argument parser reads it while `gsdocc --help` runs).
"""

from __future__ import annotations

import os
from pathlib import Path

SAMPLE_DATA_VARIABLE = "GSDOCC_SAMPLE_DATA"
"""Environment variable naming the sample folder when it is not ../shared/data beside the checkout."""


def sample_data_folder() -> Path:
    """The sample folder: $GSDOCC_SAMPLE_DATA, else ../shared/data beside the checkout (`gsdocc sample-data`
    builds it)."""
    return Path(os.environ.get(SAMPLE_DATA_VARIABLE) or Path(__file__).resolve().parents[3] / "shared" / "data")
