"""Per-phase wall-clock timings that assets report in their materialization metadata."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager


class PhaseTimer:
    """Collects named phase durations: `with timer.phase("write"): ...`."""

    def __init__(self) -> None:
        self._started = time.perf_counter()
        self.phases: dict[str, float] = {}

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.phases[name] = round(self.phases.get(name, 0.0) + time.perf_counter() - started, 2)

    @property
    def total(self) -> float:
        return round(time.perf_counter() - self._started, 2)
