"""The garbage-collector settings every engine process applies once started (actors/gc_tuning.py).

Run in a fresh interpreter: freezing is for the life of a process, and this test process's own
collector should stay as pytest left it.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import gc
from engine.gc_tuning import THRESHOLDS, tune_garbage_collection
before = gc.get_freeze_count()
tune_garbage_collection()
frozen = gc.get_freeze_count()
assert before == 0 and frozen > 1000, (before, frozen)  # start-up objects are kept out of later collections
assert gc.get_threshold() == THRESHOLDS, gc.get_threshold()
junk = [[] for _ in range(10_000)]
tune_garbage_collection()  # once per process: a second call freezes nothing made since
assert gc.get_freeze_count() == frozen, (gc.get_freeze_count(), frozen)
print("ok")
"""


def test_start_up_objects_are_frozen_and_thresholds_set_once_per_process() -> None:
    done = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
