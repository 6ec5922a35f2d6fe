"""Where a run of a Space's stream starts on the Space's timeline, so that one listener URL never
goes back in time across restarts and take-overs.

A Space's stream can be started more than once: after a restart of its node, by another node that
took it over, after a drain. Each run is a new packager with its own stream id, but listeners keep
the same playlist URL, and players hold on to the media sequence numbers (and decode times) they
have seen: a run that numbered its segments from 1 again would make hls.js wait until the new
numbers pass the old ones and make ffmpeg give up. So every run derives its first media sequence
number from the wall clock: segments since the Space's epoch (its creation), plus a margin that
covers the segment an earlier run may still have been writing and clocks of different nodes that
disagree by up to a segment. Numbers therefore only grow, with no shared counter to lose, and the
gap in numbers matches the gap in time. The run's fragments start at the matching decode time
(msn × segment samples) and the run gets a discontinuity sequence number of its own (its first
msn: strictly larger than any earlier run's, constant within the run).
"""

from __future__ import annotations

from dataclasses import dataclass

# Segments added to the wall-clock position: the earlier run may have been up to two segments
# ahead of the clock (the one it was writing, encoder look-ahead), and two nodes' clocks may
# disagree by up to a segment.
MARGIN_SEGMENTS = 4


@dataclass(frozen=True)
class RunStart:
    first_msn: int
    discontinuity_sequence: int

    def start_sample(self, samples_per_segment: int) -> int:
        """The decode time (in samples) of the run's first sample."""
        return self.first_msn * samples_per_segment


def run_start(epoch: float, now: float, segment_s: float) -> RunStart:
    """The start of a run beginning at `now` (UNIX seconds) of a Space whose timeline began at
    `epoch`. A clock before the epoch (a skewed node) still gets a valid start."""
    if segment_s <= 0:
        raise ValueError("segment_s must be positive")
    elapsed_segments = max(0, int((now - epoch) // segment_s))
    first = elapsed_segments + MARGIN_SEGMENTS
    return RunStart(first, first)
