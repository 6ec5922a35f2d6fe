"""Helpers the tests use to judge audio the way a listener would: decode it and find its tones."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import numpy.typing as npt

SAMPLE_RATE = 48_000


def decode_mono(path: Path | str) -> npt.NDArray[np.float64]:
    """Decode any file FFmpeg reads to 48 kHz mono floats in [-1, 1]."""
    resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
    chunks = []
    with av.open(str(path)) as container:
        for frame in container.decode(audio=0):
            chunks.extend(out.to_ndarray().reshape(-1) for out in resampler.resample(frame))
    if not chunks:
        return np.zeros(0)
    return np.concatenate(chunks).astype(np.float64) / 32768.0


def tone_strength(
    samples: npt.NDArray[np.float64], frequency: float, rate: int = SAMPLE_RATE
) -> float:
    """Share of the signal's spectral energy within ±10 Hz of `frequency` (0..1)."""
    if len(samples) < rate // 10:
        return 0.0
    window = np.hanning(len(samples))
    spectrum = np.abs(np.fft.rfft(samples * window)) ** 2
    freqs = np.fft.rfftfreq(len(samples), 1 / rate)
    total = spectrum[freqs > 50].sum()
    if total <= 0:
        return 0.0
    band = spectrum[(freqs > frequency - 10) & (freqs < frequency + 10)].sum()
    return float(band / total)


def rms_dbfs(samples: npt.NDArray[np.float64]) -> float:
    if len(samples) == 0:
        return -120.0
    rms = float(np.sqrt(np.mean(samples**2)))
    return 20 * np.log10(max(rms, 1e-6))


def tone_wav(path: Path, frequency: float, seconds: float, amplitude: float = 0.3) -> Path:
    """Write a 48 kHz mono 16-bit WAV of a sine tone."""
    import wave

    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    pcm = (np.sin(2 * np.pi * frequency * t) * amplitude * 32767).astype(np.int16)
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(SAMPLE_RATE)
        wav.writeframes(pcm.tobytes())
    return path
