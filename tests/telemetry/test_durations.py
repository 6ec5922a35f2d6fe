"""The lock-free histogram the media tick and every request feed."""

from __future__ import annotations

import pytest

from townhall.telemetry.durations import Durations


def test_observations_land_in_the_bucket_of_the_first_bound_not_below_them() -> None:
    histogram = Durations((0.001, 0.01, 0.1))
    for seconds in (0.0005, 0.001, 0.002, 0.01, 0.5):
        histogram.observe(seconds)

    # le="0.001" holds 0.0005 and 0.001 itself (Prometheus buckets are "less than or equal").
    assert histogram.cumulative() == [("0.001", 2), ("0.01", 4), ("0.1", 4), ("+Inf", 5)]
    assert histogram.count == 5
    assert histogram.total == pytest.approx(0.5135)


@pytest.mark.parametrize("bounds", [(), (0.1, 0.01), (0.1, 0.1)])
def test_bounds_must_be_distinct_and_increasing(bounds: tuple[float, ...]) -> None:
    with pytest.raises(ValueError, match="increasing"):
        Durations(bounds)
