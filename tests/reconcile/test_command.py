"""`poller reconcile` from the command line: exit statuses for alerting, the vocabulary from flags
and the config file, one sentence (never a traceback) for what the user must fix."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from poller.cli import main
from tests.reconcile.support import S, result_line, write_fixture


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(["reconcile", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_the_fixture_exits_1_and_writes_mismatches(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ours, _, _ = write_fixture(tmp_path)
    mismatches = tmp_path / "m.csv"
    code, out, err = run(
        [
            "--records",
            str(ours),
            str(tmp_path / "run-*.jsonl"),
            "--mismatches",
            str(mismatches),
            "--format",
            "json",
        ],
        capsys,
    )
    assert (code, err) == (1, "")
    data = json.loads(out)
    assert data["categories"]["passed_not_passed"] == 2
    assert data["results"]["files"] == [
        str(tmp_path / "run-1.jsonl"),
        str(tmp_path / "run-2.jsonl"),
    ]
    assert mismatches.read_text().splitlines()[1].startswith("danger,passed_not_passed,")


def _agreeing(tmp_path: Path, word: str = "approved") -> tuple[Path, Path]:
    ours = tmp_path / "ours.csv"
    ours.write_text(f"SdkToken,result\na,{word}\nb,pending\n")
    results = tmp_path / "r.jsonl"
    results.write_bytes(result_line("a", S.PASSED) + result_line("b", S.PENDING))
    return ours, results


def test_all_agree_exits_0_unless_not_final_counts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ours, results = _agreeing(tmp_path)
    code, out, _ = run(["--records", str(ours), str(results)], capsys)
    assert code == 0
    assert out.splitlines()[-1] == "exit 0: nothing disagrees or is missing (1 not_final)"
    code, out, _ = run(["--records", str(ours), str(results), "--fail-on-not-final"], capsys)
    assert code == 1


def test_map_flags_and_the_config_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ours, results = _agreeing(tmp_path, word="greenlit")
    code, _, err = run(["--records", str(ours), str(results)], capsys)
    assert code == 2
    assert err == (
        f"poller: error: records file {ours} line 2: the outcome 'greenlit' is not in the "
        "vocabulary; map it with --map 'greenlit=STATUS' (a status is one of passed, failed, "
        "pending, expired, invalid_token, error).\n"
    )
    code, _, err = run(["--records", str(ours), str(results), "--map", "greenlit=passed"], capsys)
    assert (code, err) == (0, "")
    config = tmp_path / "poller.toml"
    config.write_text('[reconcile.vocabulary]\ngreenlit = "passed"\n')
    code, _, _ = run(["--records", str(ours), str(results), "--config", str(config)], capsys)
    assert code == 0
    # The flag wins over the file.
    code, _, _ = run(
        ["--records", str(ours), str(results), "--config", str(config), "--map", "greenlit=failed"],
        capsys,
    )
    assert code == 1


def test_the_config_table_can_name_the_columns(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ours = tmp_path / "ours.csv"
    ours.write_text("ref,kyc\na,approved\n")
    results = tmp_path / "r.jsonl"
    results.write_bytes(result_line("a", S.PASSED))
    config = tmp_path / "poller.toml"
    config.write_text('[reconcile]\ntoken_column = "ref"\noutcome_column = "kyc"\n')
    assert run(["--records", str(ours), str(results), "--config", str(config)], capsys)[0] == 0
    assert (
        run(
            [
                "--records",
                str(ours),
                str(results),
                "--token-column",
                "ref",
                "--outcome-column",
                "kyc",
            ],
            capsys,
        )[0]
        == 0
    )


@pytest.mark.parametrize(
    ("extra", "toml", "message"),
    [
        (["--map", "greenlit"], None, "--map 'greenlit' must look like WORD=STATUS"),
        (["--map", "x=maybe"], None, "--map 'x=maybe': 'maybe' is not a status"),
        (["--limit", "-1"], None, "--limit must be 0 or more"),
        ([], "[reconcile]\nvocab = 1\n", "[reconcile] has unknown key 'vocab'"),
        (
            [],
            '[reconcile.vocabulary]\nx = "maybe"\n',
            "[reconcile.vocabulary].x: 'maybe' is not a status",
        ),
        ([], "[reconcile\n", "is not valid TOML"),
    ],
)
def test_usage_errors_exit_2_in_one_sentence(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    toml: str | None,
    message: str,
) -> None:
    ours, results = _agreeing(tmp_path)
    if toml is not None:
        config = tmp_path / "c.toml"
        config.write_text(toml)
        extra = [*extra, "--config", str(config)]
    code, out, err = run(["--records", str(ours), str(results), *extra], capsys)
    assert (code, out) == (2, "")
    assert err.startswith("poller: error: ")
    assert message in err
    assert err.count("\n") == 1


def test_records_on_stdin(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, results = _agreeing(tmp_path)
    import io

    stdin = io.TextIOWrapper(io.BufferedReader(io.BytesIO(b'{"token": "a", "status": "ok"}\n')))
    monkeypatch.setattr(sys, "stdin", stdin)
    code, out, _ = run(["--records", "-", str(results), "--format", "json"], capsys)
    assert code == 0
    assert json.loads(out)["categories"]["not_final"] == 1


def test_a_malformed_record_in_a_real_process_is_one_sentence_without_traceback(
    tmp_path: Path,
) -> None:
    ours = tmp_path / "ours.csv"
    ours.write_text("token,status\na,approved\nb\n")
    results = tmp_path / "r.jsonl"
    results.write_bytes(result_line("a", S.PASSED))
    proc = subprocess.run(
        [sys.executable, "-m", "poller", "reconcile", "--records", str(ours), str(results)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr == (
        f"poller: error: records file {ours} line 3: the row has 1 fields, the header 2.\n"
    )


def test_help_names_the_exit_statuses(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["reconcile", "--help"])
    assert caught.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "0 nothing disagrees or is missing, 1 something does" in out
    assert "2 usage or input error" in out


def test_a_night_cut_short_can_leave_tokens_missing_without_alerting(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Found in review: after --stop-after the tokens not reached yet are in no results file."""
    ours, results = _agreeing(tmp_path)
    ours.write_text(ours.read_text() + "c,approved\n")  # "c" was not reached tonight
    code, out, _ = run(["--records", str(ours), str(results)], capsys)
    assert code == 1
    assert "missing_in_results" in out
    code, out, _ = run(["--records", str(ours), str(results), "--allow-missing-results"], capsys)
    assert code == 0
    assert "missing_in_results" in out  # still reported, only not alerting
