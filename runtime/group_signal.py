"""Telling a signal sent to the engine's whole process group from one sent to the engine alone.

``kill -- -PGID`` (systemd's default stop) reaches Ray's daemons at the same instant as the engine,
and they stop while their processes linger and may still answer for a moment: asking them is a race
on a loaded machine. A canary process in the group, which dies on SIGTERM and ignores SIGINT (Ctrl-C
also reaches the whole foreground group, and Ray's daemons outlive it), tells without a race.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import time

from runtime.embedded import die_with_parent


def _canary_setup() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # kept across exec
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    die_with_parent()


def _sigterm_pending(pid: int) -> bool:
    """True if ``pid`` has a SIGTERM pending (``SigPnd``/``ShdPnd`` in ``/proc/<pid>/status``)."""
    bit = 1 << (signal.SIGTERM - 1)
    try:
        with open(f"/proc/{pid}/status") as f:
            return any(line.startswith(("SigPnd:", "ShdPnd:")) and int(line.split()[1], 16) & bit for line in f)
    except (OSError, ValueError, IndexError):
        return False


class GroupSignalCanary:
    """A ``sleep`` child in the engine's process group (not a new session: it must share the group)."""

    def __init__(self) -> None:
        sleep = shutil.which("sleep") or "/bin/sleep"
        self._proc = subprocess.Popen([sleep, "infinity"], preexec_fn=_canary_setup, stdin=subprocess.DEVNULL)

    def group_signalled(self, wait_s: float = 1.0) -> bool:
        """True if the canary died of SIGTERM, or has one pending (the kernel marks it pending in every
        process of the group before any handler runs, so a loaded machine that has not yet scheduled the
        canary cannot fool this); else waits up to ``wait_s`` for it to die."""
        deadline = time.monotonic() + wait_s
        while self._proc.poll() is None:
            if _sigterm_pending(self._proc.pid):
                return True
            if time.monotonic() >= deadline:
                break
            time.sleep(0.02)
        return self._proc.returncode == -signal.SIGTERM

    def close(self) -> None:
        if self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
