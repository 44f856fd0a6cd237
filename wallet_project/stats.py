"""Aggregates that reports (metrics) compute in the database: latency histograms over a window."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from django.db.models import Count, DurationField, ExpressionWrapper, F, Q, QuerySet, Sum


@dataclass(frozen=True)
class LatencyHistogram:
    """Cumulative counts of durations at or under each bound (seconds), their count and sum."""

    bounds: tuple[float, ...]
    cumulative: tuple[int, ...]
    count: int
    sum_seconds: float


def latency_histogram(rows: QuerySet, *, start: str, end: str, bounds: Sequence[float]) -> LatencyHistogram:
    """
    Return the histogram of end - start over the rows where end is set, in one query.

    The caller bounds rows by an indexed column (a time window); every bucket is a conditional
    count of the same scan.
    """
    done = rows.filter(**{f"{end}__isnull": False})
    aggregates: dict[str, object] = {
        f"le_{i}": Count("id", filter=Q(**{f"{end}__lte": F(start) + timedelta(seconds=bound)}))
        for i, bound in enumerate(bounds)
    }
    aggregates["total"] = Count("id")
    aggregates["total_duration"] = Sum(ExpressionWrapper(F(end) - F(start), output_field=DurationField()))
    result = done.aggregate(**aggregates)
    total_duration = result["total_duration"] or timedelta(0)
    return LatencyHistogram(
        bounds=tuple(bounds),
        cumulative=tuple(result[f"le_{i}"] for i in range(len(bounds))),
        count=result["total"],
        sum_seconds=max(total_duration.total_seconds(), 0.0),
    )
