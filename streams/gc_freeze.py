"""Keep the worker's long-lived objects out of Python's full garbage collections.

A busy worker holds ~215k objects the collector tracks: functions, tuples, dicts and modules
of Faust, aiokafka, scipy, river and pydantic, alive until the process ends. A full
collection walks all of them: at 700 predictions/s one ran every ~5 s for 100-165 ms and
freed nothing (a ``gc.callbacks`` probe, bench/README.md), and each one stops the event loop,
so every alert in flight is that much later. ``gc.freeze()`` moves the objects alive now into
a generation the collector skips; objects created later are collected as before.

The worker imports the monitor's scipy and river modules before it starts
(`streams.agents_monitor.import_monitor_modules`), but any other lazy import (Faust's, a
library's) brings new long-lived objects, so :class:`ModuleFreezer` freezes again whenever the
worker imported modules since it last did.
"""

from __future__ import annotations

import gc
import logging
import sys

__all__ = ["ModuleFreezer", "freeze_long_lived_objects"]

log = logging.getLogger("driftline.worker")


def freeze_long_lived_objects() -> int:
    """Collect what is garbage now, then freeze the rest; returns how many objects are frozen.

    Garbage frozen with the live objects would never be freed, hence the collection first.
    """
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


class ModuleFreezer:
    """Freezes once, then again each time :meth:`maybe_freeze` finds new modules imported.

    Imports stop once every code path ran, so after the warm-up this costs one ``len`` per
    call. What is in flight at a freeze (a batch of messages) is frozen too: a few thousand
    objects, once per import wave, never collected if they end in a reference cycle.
    """

    def __init__(self) -> None:
        self.modules_seen = -1

    def maybe_freeze(self, *, force: bool = False) -> bool:
        """Freeze if modules were imported since the last freeze (or ``force``); True if it
        froze."""
        modules = len(sys.modules)
        if modules == self.modules_seen and not force:
            return False
        self.modules_seen = modules
        frozen = freeze_long_lived_objects()
        log.info("%d long-lived objects (%d modules) kept out of garbage collections",
                 frozen, modules)  # fmt: skip
        return True
