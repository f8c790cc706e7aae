"""How serve's threads share a core: the Linux scheduling policy (``server.batch_scheduling``).

Every relayed request crosses between the event loop and the database writer thread twice
(the hold, the settlement), under one interpreter lock.  With the default policy the
thread being woken preempts the one waking it, finds the interpreter lock still held,
and sleeps again until the waker blocks: two context switches for nothing per crossing,
and on a virtual machine each switch is costly.  SCHED_BATCH, an ordinary unprivileged
policy with the same share of CPU by nice level, changes one thing: a woken thread does
not cut in; it runs when the running thread blocks, which is when the lock is free anyway.
Measured with scripts/bench (alternating A/B rounds on a 2-core VM, concurrency 1): about
45 us less added latency per request.

The price: where relaykit shares its cores with other busy processes, its own wake-ups
also wait for their time slice (a few milliseconds at worst) instead of preempting them.
Operators of such machines set ``server.batch_scheduling: false``.

The policy is set on the calling thread before serve starts any other, so that every
thread it starts, and every worker process it forks, inherits it.
"""

from __future__ import annotations

import os


def apply(batch: bool) -> str:
    """Set this thread's policy; return the one in effect ("batch", "normal" or "unchanged")."""
    if not batch:
        return "normal"
    setter = getattr(os, "sched_setscheduler", None)
    policy = getattr(os, "SCHED_BATCH", None)
    if setter is None or policy is None:  # not Linux: nothing to do
        return "unchanged"
    try:
        setter(0, policy, os.sched_param(0))
    except OSError:  # a sandbox that forbids it: run with what we have
        return "unchanged"
    return "batch"
