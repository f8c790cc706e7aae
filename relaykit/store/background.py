"""Helpers for the store's background threads (checkpointer, account cache refresher)."""

from __future__ import annotations

import os
import threading


def lower_priority() -> None:
    """Make the calling thread yield the CPU to the event loop and the writer (Linux: a
    per-thread nice value).  Background upkeep on the relay's core otherwise takes its
    turn in the middle of requests: measured as clusters of 4-13 ms answers in an
    open-loop run while checkpoints ran."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
    except (AttributeError, OSError):  # not Linux, or not allowed: run at the normal priority
        pass
