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
distinct mix, across ticks. (Limiting a (k, 960) stack of mixes in one set of array operations was
measured slower than k single frames: its ~100 KB temporaries cost page faults on every call.)
"""

from __future__ import annotations

import math
from typing import Final

import numpy as np
import numpy.typing as npt

from townhall.media.audio import FRAME_SAMPLES, SAMPLE_RATE, SILENCE, PcmFrame

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

    def silence(self) -> PcmFrame:
        """One frame of silence through the limiter: the shared `SILENCE` frame, with no array
        work, when no reduction is in force (the output is zeros and the state cannot change);
        otherwise `process` of zeros, so the envelope keeps decaying exactly as it would."""
        if self._reduction_db == 0.0:
            return SILENCE
        return self.process(np.zeros(FRAME_SAMPLES))

    def process(self, mix: npt.NDArray[np.floating] | npt.NDArray[np.integer]) -> PcmFrame:
        """Limit one block (any length; normally a 960-sample frame) of a wide mix into int16."""
        x = np.asarray(mix, dtype=np.float64).reshape(-1)
        magnitude = np.abs(x)
        if self._reduction_db == 0.0 and (x.size == 0 or float(magnitude.max()) <= self.ceiling):
            return np.rint(x).astype(np.int16)  # exact for the integer-valued sums the mixer makes

        steps = self._steps(x.size)
        carried = math.log(self._reduction_db) if self._reduction_db > 0.0 else -math.inf
        overs = np.flatnonzero(magnitude > self.ceiling)
        if overs.size:
            # ln need[j] − (j+1)·ln a where a sample needs reduction, −inf elsewhere.
            term = np.full(x.size, -np.inf)
            need_db = 20.0 * np.log10(magnitude[overs] / self.ceiling)
            term[overs] = np.log(need_db) - steps[overs]
            log_reduction = steps + np.maximum(np.maximum.accumulate(term), carried)
        else:  # pure release: the carried reduction decays
            log_reduction = steps + carried
        reduction_db = np.exp(log_reduction)
        y = np.rint(x * np.exp(reduction_db * _DB_TO_LN_GAIN))

        last = float(reduction_db[-1])
        self._reduction_db = last if last >= SNAP_DB else 0.0
        # |x·gain| ≤ ceiling ≤ 32767 by construction (up to float rounding): no clip is needed.
        return y.astype(np.int16)


def _decay_steps(n: int, log_decay: float) -> npt.NDArray[np.float64]:
    return np.arange(1, n + 1, dtype=np.float64) * log_decay
