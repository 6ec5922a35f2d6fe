"""The server-wide captions switch and the model it uses (config.parse_captions)."""

from __future__ import annotations

from pathlib import Path

import pytest

from townhall.captions.model import default_model, is_model_dir, packaged_model
from townhall.config import ConfigError, load

needs_extra = pytest.mark.skipif(
    default_model() is None, reason="the captions extra is not installed"
)


@needs_extra
def test_captions_are_on_with_the_packaged_tiny_en_model_when_the_extra_is_installed(
    tmp_path: Path,
) -> None:
    model = packaged_model()
    assert model is not None
    assert is_model_dir(model)
    config = load({}, data_dir=tmp_path)
    assert config.captions.enabled
    assert config.captions.model == model


def test_the_switch_turns_captions_off_whatever_is_installed(tmp_path: Path) -> None:
    for off in ("off", "false", "0"):
        assert not load({"TOWNHALL_CAPTIONS": off}, data_dir=tmp_path).captions.enabled


@needs_extra
def test_an_operators_model_directory_is_used_and_a_wrong_one_refused_by_name(
    tmp_path: Path,
) -> None:
    model = packaged_model()
    assert model is not None
    config = load({"TOWNHALL_CAPTIONS_MODEL": str(model)}, data_dir=tmp_path)
    assert config.captions.model == model
    with pytest.raises(ConfigError, match="TOWNHALL_CAPTIONS_MODEL"):
        load({"TOWNHALL_CAPTIONS_MODEL": str(tmp_path)}, data_dir=tmp_path)


def test_an_unknown_switch_value_is_refused_by_name(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="TOWNHALL_CAPTIONS"):
        load({"TOWNHALL_CAPTIONS": "sometimes"}, data_dir=tmp_path)
