"""JSON log lines: every record one object a log collector can parse, with its structured fields."""

from __future__ import annotations

import json
import logging
import sys

from townhall.telemetry.jsonlog import JsonFormatter


def _record(message: str, *args: object, **extra: object) -> logging.LogRecord:
    logger = logging.getLogger("townhall.test")
    return logger.makeRecord(
        logger.name, logging.WARNING, __file__, 1, message, args, None, extra=extra
    )


def test_a_log_line_is_one_json_object_with_time_level_logger_and_message() -> None:
    line = JsonFormatter().format(_record("space %s: media clock stalled", "abc"))

    assert "\n" not in line
    out = json.loads(line)
    assert out["level"] == "WARNING"
    assert out["logger"] == "townhall.test"
    assert out["message"] == "space abc: media clock stalled"
    assert out["time"].endswith("+00:00")


def test_structured_fields_are_kept_and_values_json_cannot_hold_are_written_as_text() -> None:
    out = json.loads(JsonFormatter().format(_record("GET", route="/live/{space}", odd={1, 2})))

    assert out["route"] == "/live/{space}"
    assert out["odd"] == "{1, 2}"


def test_an_exception_is_inside_the_object_not_on_lines_of_its_own() -> None:
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        record = logging.getLogger("t").makeRecord(
            "t", logging.ERROR, __file__, 1, "failed", (), exc_info=sys.exc_info()
        )
    line = JsonFormatter().format(record)

    assert line.count("\n") == 0
    assert "RuntimeError: boom" in json.loads(line)["exception"]
