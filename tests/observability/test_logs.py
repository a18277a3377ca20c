"""Logging setup: text and JSON lines, levels, one handler, and secrets that never get out."""

from __future__ import annotations

import io
import json
import logging
import sys
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest

from poller.observability import logs
from poller.observability.logs import (
    REDACTED,
    SecretFilter,
    SecretRegistry,
    register_secret,
    setup_logging,
)
from poller.observability.progress import Progress
from poller.pipeline.pacing import Pacer
from poller.pipeline.stats import RunStats

SECRET = "testSECRETkeyNEVERshown"


class TtyStream(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def fresh_logger(monkeypatch: pytest.MonkeyPatch) -> Iterator[logging.Logger]:
    """Each test configures "poller" from scratch, with an empty secret registry, and leaves
    the logger as it found it."""
    monkeypatch.setattr(logs, "_registry", SecretRegistry())
    logger = logging.getLogger("poller")
    saved = logger.handlers[:], logger.level, logger.propagate
    yield logger
    logger.handlers[:], logger.level, logger.propagate = saved


def json_lines(out: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_text_format(fresh_logger: logging.Logger) -> None:
    root = logging.getLogger()
    root_before = root.handlers[:], root.level
    out = io.StringIO()
    setup_logging(0, False, stream=out)
    fresh_logger.info("hello %s", "world")
    logging.getLogger("poller.api.client").warning("from a child logger")
    assert out.getvalue() == "poller: hello world\npoller: from a child logger\n"
    assert fresh_logger.propagate is False
    assert (root.handlers, root.level) == root_before  # the root logger is not ours


def test_json_format_fields_and_extras(fresh_logger: logging.Logger) -> None:
    out = io.StringIO()
    setup_logging(0, False, fmt="json", stream=out)
    fresh_logger.info("progress: %d tokens", 12, extra={"progress": {"done": 12}, "city": "Zürich"})
    fresh_logger.warning("clash", extra={"level": "custom", "ts": 1})
    first, second = json_lines(out)
    assert list(first)[:4] == ["ts", "level", "logger", "message"]
    assert first["level"] == "info"
    assert first["logger"] == "poller"
    assert first["message"] == "progress: 12 tokens"
    assert first["progress"] == {"done": 12}
    assert first["city"] == "Zürich"
    assert "Zürich" in out.getvalue()  # ensure_ascii=False: readable, not \u00fc
    ts = first["ts"]
    assert ts.endswith("Z")
    parsed = datetime.fromisoformat(ts)
    assert parsed.utcoffset() is not None
    assert parsed.utcoffset().total_seconds() == 0  # type: ignore[union-attr]
    # An extra named like a base field does not overwrite it, and is not lost.
    assert second["level"] == "warning"
    assert second["level_"] == "custom"
    assert second["ts_"] == 1


def test_json_exception_and_unencodable_extra(fresh_logger: logging.Logger) -> None:
    out = io.StringIO()
    setup_logging(0, False, fmt="json", stream=out)
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        fresh_logger.exception("it failed", extra={"obj": object()})
    (line,) = json_lines(out)
    assert line["level"] == "error"
    assert "RuntimeError: boom" in line["exception"]
    assert line["obj"].startswith("<object object")


def test_json_is_one_line_per_record(fresh_logger: logging.Logger) -> None:
    out = io.StringIO()
    setup_logging(0, False, fmt="json", stream=out)
    fresh_logger.info("two\nlines")
    assert len(out.getvalue().splitlines()) == 1
    assert json_lines(out)[0]["message"] == "two\nlines"


@pytest.mark.parametrize(
    ("verbose", "quiet", "level"),
    [
        (0, False, logging.INFO),
        (1, False, logging.INFO),
        (2, False, logging.DEBUG),
        (3, False, logging.DEBUG),
        (0, True, logging.WARNING),
        (2, True, logging.WARNING),  # --quiet wins
    ],
)
def test_levels(fresh_logger: logging.Logger, verbose: int, quiet: bool, level: int) -> None:
    out = io.StringIO()
    setup_logging(verbose, quiet, stream=out)
    assert fresh_logger.level == level
    fresh_logger.debug("d")
    fresh_logger.info("i")
    fresh_logger.warning("w")
    expected = [n for n, lv in (("d", 10), ("i", 20), ("w", 30)) if lv >= level]
    assert out.getvalue() == "".join(f"poller: {n}\n" for n in expected)


def test_two_setups_do_not_duplicate_lines(fresh_logger: logging.Logger) -> None:
    first, second = io.StringIO(), io.StringIO()
    setup_logging(0, False, stream=first)
    setup_logging(0, False, fmt="json", stream=second)
    fresh_logger.info("once")
    assert len(fresh_logger.handlers) == 1
    assert first.getvalue() == ""
    assert [line["message"] for line in json_lines(second)] == ["once"]


def test_unknown_format_is_an_error() -> None:
    with pytest.raises(ValueError, match="'text' or 'json'"):
        setup_logging(0, False, fmt="xml", stream=io.StringIO())  # type: ignore[arg-type]


def test_short_values_are_not_registered() -> None:
    assert register_secret("abc1234") is False
    assert register_secret("abcd1234") is True
    assert len(logs._registry) == 1


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_secret_redacted_in_message_args_and_traceback(
    fresh_logger: logging.Logger, fmt: Any
) -> None:
    out = io.StringIO()
    setup_logging(2, False, fmt=fmt, stream=out)
    register_secret(SECRET)  # after setup: still redacted
    fresh_logger.info(f"key in the message {SECRET}")
    fresh_logger.info("key in an argument %s", SECRET)
    fresh_logger.debug("key inside an argument's repr %r", {"SecretKey": SECRET})
    fresh_logger.info("key in an extra", extra={"headers": {"Authorization": SECRET}})
    try:
        raise ValueError(f"signature mismatch for {SECRET}")
    except ValueError:
        fresh_logger.exception("request failed")
    text = out.getvalue()
    assert SECRET not in text
    # message, argument, repr, traceback; and in JSON the nested extra too
    assert text.count(REDACTED) == (5 if fmt == "json" else 4)
    assert "ValueError: signature mismatch for " + REDACTED in text.replace("\\n", "\n")


def test_secret_filter_rewrites_the_record_itself() -> None:
    registry = SecretRegistry()
    registry.add(SECRET)
    secret_filter = SecretFilter(registry)
    try:
        raise KeyError(SECRET)
    except KeyError:
        record = logging.LogRecord(
            "poller", logging.ERROR, __file__, 1, "got %s and %d", (SECRET, 3), None
        )
        record.exc_info = sys.exc_info()
    record.token_hint = f"x{SECRET}y"
    assert secret_filter.filter(record) is True  # redacts, never drops
    assert record.getMessage() == f"got {REDACTED} and 3"
    assert record.exc_text is not None
    assert SECRET not in record.exc_text
    assert REDACTED in record.exc_text
    assert record.__dict__["token_hint"] == f"x{REDACTED}y"
    # Any other handler formatting this record now sees only the redacted text.
    assert SECRET not in logging.Formatter("%(message)s").format(record)


def test_secret_filter_with_bad_arguments_still_redacts() -> None:
    registry = SecretRegistry()
    registry.add(SECRET)
    record = logging.LogRecord(
        "poller", logging.INFO, __file__, 1, f"{SECRET} %d %d", (SECRET,), None
    )
    assert SecretFilter(registry).filter(record)
    assert SECRET not in str(record.msg)
    assert SECRET not in repr(record.args)


def test_overlapping_secrets_longest_wins() -> None:
    registry = SecretRegistry()
    registry.add("abcdefgh")
    registry.add("abcdefgh-and-more")
    assert registry.redact("x abcdefgh-and-more y abcdefgh") == f"x {REDACTED} y {REDACTED}"
    assert repr(registry) == "<SecretRegistry 2 secrets>"


def test_no_secrets_leaves_records_alone() -> None:
    record = logging.LogRecord("poller", logging.INFO, __file__, 1, "a %s", ("b",), None)
    assert SecretFilter(SecretRegistry()).filter(record)
    assert record.msg == "a %s"
    assert record.args == ("b",)


def test_log_lines_step_around_a_live_progress_bar(fresh_logger: logging.Logger) -> None:
    """A warning during a run on a terminal: the bar is cleared, the line written whole,
    and the bar redrawn after it, instead of the line being glued to the bar."""
    out = TtyStream()
    setup_logging(0, False, stream=out)
    stats, now = RunStats(), [0.0]
    progress = Progress(stats, Pacer(19.0), stream=out, total=10, clock=lambda: now[0])
    try:
        stats.by_status["passed"] += 4
        now[0] = 1.0
        progress.tick()
        before = out.getvalue()
        assert "4/10" in before
        fresh_logger.warning("throttled by the server")
        after = out.getvalue()[len(before) :]
        # Cleared (back to the line start, blanked), our line whole, then the bar again.
        cleared, line, redrawn = after.partition("poller: throttled by the server\n")
        assert line
        assert cleared.startswith("\r")
        assert cleared.strip(" \r") == ""
        assert "4/10" in redrawn
    finally:
        progress.close()
