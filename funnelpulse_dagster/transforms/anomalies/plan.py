"""Running a large plan once: computed frames with their lineage cut."""

from __future__ import annotations

from pyspark.sql import DataFrame


def computed(frame: DataFrame) -> DataFrame:
    """`frame` computed now, with its lineage cut (a local checkpoint).

    Two reasons. The detector's plan is large (hundreds of thousands of characters): every
    later use of an uncut frame plans it all again, which costs more than the work on small
    data. And the live path judges after every streaming run in one long-lived driver: a
    `cache()` stays until it is unpersisted, so caches left behind piled up run after run, while
    a checkpoint's blocks go when the frame is no longer referenced (Spark's context cleaner)."""
    return frame.localCheckpoint(eager=True)
