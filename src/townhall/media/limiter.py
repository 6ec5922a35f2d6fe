"""Peak limiter: a mix that may exceed 16 bits (13 people shouting) becomes int16 that never clips.

Theory of operation
-------------------
The limiter is a gain computer with no look-ahead (look-ahead would add its length to every
speaker's return path), evaluated per sample but vectorised per 20 ms frame:

- The *ceiling* is `threshold × 32767`. Each sample needs a gain reduction, in dB, of
  `need[n] = max(0, 20·log10(|x[n]| / ceiling))`.
- The reduction applied is `r[n] = max(need[n], r[n-1] · a)`: it rises *instantly* to whatever a
  sample needs (attack: no sample ever leaves above the ceiling), and otherwise decays exponentially
  towards 0 dB with time constant `release_s` (`a = exp(-1 / (release_s · 48000))`), so the gain
  recovers smoothly, a little at every sample, never in steps between frames: no clicks.
- That recursion is a running maximum in the log domain,
  `ln r[n] = (n+1)·ln a + max(ln r[-1], max_{j≤n}(ln need[j] − (j+1)·ln a))`,
  which numpy evaluates with one `maximum.accumulate`: no per-sample Python loop.
- When no reduction is in force and the frame's peak is under the ceiling (almost always), the input
  passes through bit-exact. Once the reduction has decayed below 1e-4 dB (≈ 0.4 LSB at full scale)
  it snaps to 0 and bit-exactness resumes.

Output is rounded to int16: |y| ≤ ceiling + 0.5, i.e. within one LSB of the ceiling. An instantly
attacked onset flattens the part of its first half-cycle above the ceiling, the price of having no
look-ahead; after that the held gain keeps the waveform's shape.

Each `Limiter` instance carries its own state (the current reduction); the mixer keeps one per
distinct mix, across ticks. `limit_together` runs several limiters over a stack of mixes in one set
of array operations: numpy's per-call overhead, not arithmetic, dominates 960-sample frames, so a
full stage's 14 mixes cost little more than one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Final

import numpy as np
import numpy.typing as npt

from townhall.media.audio import FRAME_SAMPLES, SAMPLE_RATE, PcmFrame

FULL_SCALE: Final = 32767
_DB_TO_LN_GAIN: Final = -math.log(10.0) / 20.0  # gain = exp(reduction_db · this)
SNAP_DB: Final = 1e-4  # below this a reduction is inaudible and unmeasurable in int16: call it 0


class Limiter:
    """Instant-attack, exponential-release peak limiter with its own envelope state."""

    def __init__(self, threshold: float = 0.891, release_s: float = 0.25) -> None:
        if not 0.0 < threshold <= 1.0:
            raise ValueError("threshold must be in (0, 1] (a fraction of full scale)")
        if not release_s > 0.0:
            raise ValueError("release_s must be positive")
        self.threshold = threshold
        self.release_s = release_s
        self.ceiling = threshold * FULL_SCALE
        self._log_decay = -1.0 / (release_s * SAMPLE_RATE)  # ln a, per sample
        self._frame_steps = _decay_steps(FRAME_SAMPLES, self._log_decay)
        self._reduction_db = 0.0

    def _steps(self, n: int) -> npt.NDArray[np.float64]:
        """(j+1)·ln a for j in 0..n-1: how far a reduction decays by each sample of a block."""
        return self._frame_steps if n == FRAME_SAMPLES else _decay_steps(n, self._log_decay)

    @property
    def reduction_db(self) -> float:
        """Gain reduction in force after the last processed sample, in dB (0 = unity gain)."""
        return self._reduction_db

    @property
    def gain(self) -> float:
        return float(10.0 ** (-self._reduction_db / 20.0))

    def take_over(self, other: Limiter) -> None:
        """Continue from `other`'s envelope: whoever switches from its mix to ours hears no jump."""
        self._reduction_db = other._reduction_db

    def reset(self) -> None:
        self._reduction_db = 0.0

    def process(self, mix: npt.NDArray[np.floating] | npt.NDArray[np.integer]) -> PcmFrame:
        """Limit one block (any length; normally a 960-sample frame) of a wide mix into int16."""
        return limit_together([self], np.asarray(mix, dtype=np.float64).reshape(1, -1))[0]


def _decay_steps(n: int, log_decay: float) -> npt.NDArray[np.float64]:
    return np.arange(1, n + 1, dtype=np.float64) * log_decay


def limit_together(
    limiters: Sequence[Limiter], mixes: npt.NDArray[np.floating] | npt.NDArray[np.integer]
) -> npt.NDArray[np.int16]:
    """Row i of `mixes` through `limiters[i]`, all at once; returns int16 rows of the same shape.

    The limiters must share threshold and release (the mixer's all do); each keeps its own state.
    """
    x = np.asarray(mixes, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] != len(limiters):
        raise ValueError("need one row of `mixes` per limiter")
    if not limiters or x.shape[1] == 0:
        return np.zeros(x.shape, dtype=np.int16)
    first = limiters[0]
    if any(lim.ceiling != first.ceiling or lim.release_s != first.release_s for lim in limiters):
        raise ValueError("limiters limited together must share threshold and release")
    ceiling = first.ceiling
    reduction = np.array([lim._reduction_db for lim in limiters])
    magnitude = np.abs(x)
    out = np.rint(x)  # exact for the integer-valued sums the mixer makes
    busy = np.flatnonzero((reduction > 0.0) | (magnitude.max(axis=1) > ceiling))
    if busy.size:  # otherwise (almost always) everything passes through bit-exact
        steps = first._steps(x.shape[1])
        with np.errstate(divide="ignore"):  # ln 0 = -inf: no reduction carried in
            carried = np.log(reduction[busy])[:, None]
        held = magnitude[busy]
        over = held > ceiling
        if over.any():
            # ln need[j] − (j+1)·ln a where a sample needs reduction, −inf elsewhere.
            term = np.full(held.shape, -np.inf)
            need_db = 20.0 * np.log10(held[over] / ceiling)
            term[over] = np.log(need_db) - np.broadcast_to(steps, held.shape)[over]
            log_reduction = steps + np.maximum(np.maximum.accumulate(term, axis=1), carried)
        else:  # pure release: the carried reduction decays
            log_reduction = steps + carried
        reduction_db = np.exp(log_reduction)
        out[busy] = np.rint(x[busy] * np.exp(reduction_db * _DB_TO_LN_GAIN))
        for row, last in zip(busy.tolist(), reduction_db[:, -1].tolist(), strict=True):
            limiters[row]._reduction_db = last if last >= SNAP_DB else 0.0
    # |x·gain| ≤ ceiling ≤ 32767 by construction (up to float rounding): no clip is needed.
    return out.astype(np.int16)
