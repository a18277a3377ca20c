"""Issue 9, item 4: a line decided by the input is not final, so a fixed export is asked afresh.

A CSV row with a garbled `issued_at` used to get a final `invalid_token` line; after the export
was fixed, the rerun over the same output skipped the token as "already final", for good.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from aioresponses import aioresponses

from poller.cli import main
from tests.helpers import URL, ScriptedServer, ok

pytestmark = pytest.mark.usefixtures("user_env")


def test_a_fixed_export_is_asked_again_after_a_bad_row(tmp_path: Path) -> None:
    export = tmp_path / "export.csv"
    out = tmp_path / "out.jsonl"
    export.write_text("SdkToken,issued_at\ngood,\nfixme,yesterday-ish\n")
    server = ScriptedServer({"good": [ok()], "fixme": [ok("2016")]})
    with aioresponses() as mocked:
        mocked.post(URL, callback=server, repeat=True)
        first = main(["run", "--tokens", str(export), "--output", str(out), "-q"])
        lines = [json.loads(x) for x in out.read_text().splitlines()]
        bad = next(line for line in lines if line["token"] == "fixme")
        assert (bad["status"], bad["final"], bad["attempts"]) == ("invalid_token", False, 0)
        assert first == 1  # not everything is settled: cron hears about the bad row
        assert server.calls.get("fixme", 0) == 0

        export.write_text("SdkToken,issued_at\ngood,\nfixme,\n")  # the export is fixed
        second = main(["run", "--tokens", str(export), "--output", str(out), "-q"])
    assert second == 0
    assert server.calls["good"] == 1  # final the first time: not asked again
    assert server.calls["fixme"] == 1  # asked now, instead of skipped as "already final"
    last = [json.loads(x) for x in out.read_text().splitlines()][-1]
    assert (last["token"], last["status"], last["final"]) == ("fixme", "failed", True)


def test_a_local_expiry_stands_while_the_input_agrees_and_yields_to_a_corrected_one(
    tmp_path: Path,
) -> None:
    """An `expired` line decided from issued_at alone (no request) must not block the token when
    the export (or max_token_age) was wrong: the corrected input gets it asked."""
    export = tmp_path / "export.csv"
    out = tmp_path / "out.jsonl"
    now = time.time()
    export.write_text(f"SdkToken,issued_at\nold,{now - 80 * 3600:.0f}\n")
    server = ScriptedServer({"old": [ok()]})
    with aioresponses() as mocked:
        mocked.post(URL, callback=server, repeat=True)
        assert main(["run", "--tokens", str(export), "--output", str(out), "-q"]) == 0
        assert main(["run", "--tokens", str(export), "--output", str(out), "-q"]) == 0
        # Same input: the expiry stands; no second line, no request.
        lines = [json.loads(x) for x in out.read_text().splitlines()]
        assert [(line["status"], line["error"]["code"]) for line in lines] == [
            ("expired", "TokenTooOld")
        ]
        assert server.calls.get("old", 0) == 0
        export.write_text(f"SdkToken,issued_at\nold,{now - 2 * 3600:.0f}\n")  # corrected
        assert main(["run", "--tokens", str(export), "--output", str(out), "-q"]) == 0
    assert server.calls["old"] == 1
    last = json.loads(out.read_text().splitlines()[-1])
    assert (last["token"], last["status"], last["final"]) == ("old", "passed", True)
