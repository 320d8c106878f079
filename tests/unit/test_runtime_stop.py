"""The launcher's helpers that need no Ray: telling a process-group signal, and the start-up phase clock."""

from __future__ import annotations

import os
import signal
import subprocess
import time

from runtime.group_signal import GroupSignalCanary, _sigterm_pending
from runtime.phases import PhaseClock


def test_a_sigterm_pending_in_a_process_not_yet_scheduled_counts() -> None:
    proc = subprocess.Popen(["sleep", "60"])
    try:
        os.kill(proc.pid, signal.SIGSTOP)  # as if a loaded machine had not run it yet
        assert not _sigterm_pending(proc.pid)
        os.kill(proc.pid, signal.SIGTERM)
        while not _sigterm_pending(proc.pid):  # the kernel marks it pending at once; waits on nothing else
            time.sleep(0.01)
    finally:
        proc.kill()
        proc.wait()


def test_the_canary_tells_a_group_sigterm_from_a_signal_to_the_engine_alone() -> None:
    alone = GroupSignalCanary()
    try:
        assert not alone.group_signalled(wait_s=0.0)
    finally:
        alone.close()
    grouped = GroupSignalCanary()
    try:
        os.kill(grouped._proc.pid, signal.SIGTERM)  # what kill -- -PGID does to it
        assert grouped.group_signalled(wait_s=30.0)
    finally:
        grouped.close()


def test_a_pending_sigterm_is_not_mistaken_for_a_ctrl_c() -> None:
    canary = GroupSignalCanary()
    try:
        os.kill(canary._proc.pid, signal.SIGINT)  # Ctrl-C reaches the whole foreground group: the canary ignores it
        assert not canary.group_signalled(wait_s=0.2)
        assert canary._proc.poll() is None
    finally:
        canary.close()


def test_the_phase_clock_names_each_phase_once_in_order() -> None:
    clock = PhaseClock()
    clock.mark("interpreter")
    clock.mark("ray")
    clock.mark("actors")
    assert list(clock.phases) == ["interpreter", "ray", "actors"]
    assert all(seconds >= 0 for seconds in clock.phases.values())
    assert clock.total_s() >= clock.phases["ray"]
