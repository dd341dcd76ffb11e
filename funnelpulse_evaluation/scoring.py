"""Precision, recall and F1 from counts of true positives, false positives and false negatives:
one definition for the harness, the alternatives' choice and the benchmark's report."""

from __future__ import annotations


def rates(counts: dict) -> dict:
    """`counts` (tp, fp, fn) with precision, recall and F1 beside them (0 where undefined)."""
    tp, fp, fn = counts["tp"], counts["fp"], counts["fn"]
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {**counts, "precision": precision, "recall": recall, "f1": f1}
