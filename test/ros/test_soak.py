"""benchmarks/soak.py in short (60 sets): the report it writes accounts for every published set.

No timing or memory assertions: the figures of the full run are in benchmarks/README.md.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path



REPO = Path(__file__).resolve().parents[2]
SETS = 60


def test_short_soak_accounts_for_every_set(tmp_path: Path, subprocess_env: dict[str, str], python: str) -> None:
    out = tmp_path / "soak.json"
    run = subprocess.run([python, str(REPO / "benchmarks" / "soak.py"), "--sets", str(SETS), "--json", str(out)],
                         env=subprocess_env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert run.stdout.strip().splitlines()[-1] == f"wrote {out}"
    report = json.loads(out.read_text())
    acc = report["accounting"]
    assert acc["sets_published"] == SETS and acc["messages_published"] == 6 * SETS
    assert acc["messages_received"] + acc["messages_lost_in_transport"] == 6 * SETS
    # the node received every set the synchroniser formed, and each has exactly one outcome
    assert acc["sets_in"] == acc["sync_sets_out"] == acc["grids_out"] + sum(acc["dropped"].values())
    assert acc["in_flight"] == 0 and acc["grids_out"] >= 1
    assert acc["accounted"] and acc["unexplained"] == 0
    assert set(acc["dropped"]) <= {"sets_dropped_busy", "sets_skipped_cadence", "tf_failures", "decode_errors"}
    # one latency and memory sample per grid received, in stamp order; the node's counters as it reported them
    assert report["latency_ms"]["count"] == len(report["grids"]) == acc["grids_out"]
    assert report["grids_in_stamp_order"]
    assert report["node_counters"]["grids_out"] == acc["grids_out"]
    assert report["memory"]["rss_after_first_grid_mb"] > 0 and report["samples"]
    assert (tmp_path / "soak.node.log").read_text().count("RANDOM WEIGHTS") >= 1
