"""The media behind FileInfo links (SPEC §8), served by the simulator itself: the bytes match what
the answer states, links are signed and expire, downloads fault on demand, and every download is
counted and logged so an archive's behaviour can be judged from the outside."""

from __future__ import annotations

import argparse
import hashlib
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest

from poller.simulator import RunningSimulator, SimulatorConfig, running_simulator
from poller.simulator.__main__ import main
from poller.simulator.app import SIMULATOR_KEY
from poller.simulator.command import config_from_args, configure_parser
from poller.simulator.media import MIN_SIZE, folder_of, media_files
from poller.simulator.outcomes import ApplyParams
from tests.simulator_support import FakeClock, query

SMALL = 0.001  # ~12 KB a token: every test downloads everything it is given
# Tencent's example sizes (SPEC §8), which the files spread +-20% around at scale 1.
NOMINAL = {
    "CardVideo": 9_400_000,
    "CardImage": 232_000,
    "CardInfoOcrJson": 200,
    "LiveData": 700_000,
    "LiveVideo": 900_000,
    "ActionVideo": 900_000,
    "BestFrame": 123_000,
    "ProfileImage": 23_000,
    "CardInfoInputJson": 200,
}


def _config(**changes: Any) -> SimulatorConfig:
    base: dict[str, Any] = {"pending_share": 0.0, "media_scale": SMALL, "shutdown_timeout": 0.1}
    return SimulatorConfig(**{**base, **changes})


@pytest.fixture
async def sim(clock: FakeClock) -> AsyncIterator[RunningSimulator]:
    async with running_simulator(_config(media_ttl=60.0), clock=clock) as running:
        yield running


def _file_infos(response: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """field path -> FileInfo, for every FileInfo in an answer."""
    found: dict[str, dict[str, Any]] = {}
    for key in ("CardVerifyResults", "CompareResults"):
        for i, result in enumerate(response[key]):
            for name, value in result.items():
                if isinstance(value, dict) and set(value) == {"Url", "MD5", "Size"}:
                    found[f"{key}[{i}].{name}"] = value
    return found


async def _answer(
    sim: RunningSimulator, session: aiohttp.ClientSession, clock: FakeClock, token: str
) -> dict[str, dict[str, Any]]:
    reply = await query(session, sim.endpoint, token, timestamp=clock.now)
    return _file_infos(reply.response)


async def _get(session: aiohttp.ClientSession, url: str) -> tuple[int, bytes]:
    async with session.get(url) as resp:
        return resp.status, await resp.read()


def _path(url: str) -> str:
    return urlsplit(url).path


async def test_served_bytes_are_what_every_file_info_states(
    sim: RunningSimulator, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    simulator = sim.app[SIMULATOR_KEY]
    tokens = [*sim.mint(3), simulator.mint_local(ApplyParams(check_mode=3))]
    for token in tokens:
        infos = await _answer(sim, session, clock, token)
        assert [(f, i["MD5"], i["Size"]) for f, i in infos.items()] == sim.media_files(token)
        for info in infos.values():
            assert info["Url"].startswith(f"{sim.endpoint}/media/{folder_of(token)}/")
            status, body = await _get(session, info["Url"])
            assert status == 200
            assert (hashlib.md5(body).hexdigest(), len(body)) == (info["MD5"], info["Size"])  # noqa: S324
    # Mode 3 is liveness only: no card files.
    assert not any(f.startswith("CardVerifyResults") for f, _, _ in sim.media_files(tokens[-1]))
    assert set(Counter(outcome for _, outcome in sim.media_log())) == {"ok"}


def test_sizes_are_tencents_example_spread_and_scaled() -> None:
    for seed in range(20):
        files = media_files("T", seed, with_cards=True, attempts=2, scale=1.0)
        assert len(files) == 3 + 2 * 6
        for f in files:
            nominal = NOMINAL[f.field.rsplit(".", 1)[1]]
            assert 0.8 * nominal - 1 <= f.size <= 1.2 * nominal + 1, f
        tiny = media_files("T", seed, with_cards=True, attempts=2, scale=1e-6)
        assert min(f.size for f in tiny) == MIN_SIZE
    # The cached-prefix MD5 is the MD5 of the whole file, for a real-size video too.
    video = media_files("T", 1, with_cards=True, attempts=1, scale=1.0)[0]
    assert video.field == "CardVerifyResults[0].CardVideo"
    content = video.content()
    assert (len(content), hashlib.md5(content).hexdigest()) == (video.size, video.md5)  # noqa: S324


def test_files_differ_by_token_field_and_attempt() -> None:
    one = media_files("A", 1, with_cards=True, attempts=2, scale=SMALL)
    other = media_files("B", 1, with_cards=True, attempts=2, scale=SMALL)
    md5s = {f.md5 for f in one + other}
    assert len(md5s) == len(one) + len(other)


async def test_content_is_stable_across_queries_while_the_links_are_fresh(
    sim: RunningSimulator, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    [token] = sim.mint(1)
    first = await _answer(sim, session, clock, token)
    clock.advance(5)
    second = await _answer(sim, session, clock, token)
    assert first.keys() == second.keys()
    for field, info in first.items():
        again = second[field]
        assert (info["MD5"], info["Size"], _path(info["Url"])) == (
            again["MD5"],
            again["Size"],
            _path(again["Url"]),
        )
        assert urlsplit(info["Url"]).query != urlsplit(again["Url"]).query
        assert await _get(session, info["Url"]) == await _get(session, again["Url"])


async def test_links_expire_after_media_ttl_and_a_new_query_renews_them(
    sim: RunningSimulator, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    [token] = sim.mint(1)
    url = next(iter((await _answer(sim, session, clock, token)).values()))["Url"]
    expires = int(parse_qs(urlsplit(url).query)["expires"][0])
    assert expires == int(clock.now + 60)
    clock.advance(59)
    assert (await _get(session, url))[0] == 200
    clock.advance(2)
    status, body = await _get(session, url)
    assert status == 403
    assert b"Request has expired" in body
    renewed = (await _answer(sim, session, clock, token))[next(iter(sim.media_files(token)))[0]]
    assert (await _get(session, renewed["Url"]))[0] == 200
    assert [o for _, o in sim.media_log()] == ["ok", "expired", "ok"]


@pytest.mark.parametrize(
    "tamper",
    [
        lambda q: q.replace("sign=", "sign=0" if "sign=0" not in q else "sign=1", 1),
        lambda q: q.replace("expires=", "expires=9", 1),  # a longer life is a bad signature
        lambda q: q.split("&")[0],  # no signature at all
        lambda q: "",
    ],
)
async def test_a_tampered_link_is_refused(
    sim: RunningSimulator, session: aiohttp.ClientSession, clock: FakeClock, tamper: Any
) -> None:
    [token] = sim.mint(1)
    url = next(iter((await _answer(sim, session, clock, token)).values()))["Url"]
    base, _, query_string = url.partition("?")
    status, body = await _get(session, f"{base}?{tamper(query_string)}")
    assert status == 403
    assert b"SignatureDoesNotMatch" in body
    assert sim.media_log() == [(_path(url), "bad_sign")]


async def test_an_unknown_file_is_404_even_with_a_valid_signature(
    sim: RunningSimulator, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    [token] = sim.mint(1)
    await _answer(sim, session, clock, token)
    folder = folder_of(token)
    for path in (f"/media/{folder}/nope.mp4", f"/media/{folder_of('never')}/card.mp4"):
        status, body = await _get(session, sim.media_link(path))
        assert (status, b"NoSuchKey" in body) == (404, True)
    # A token nobody was answered for has no reachable files yet.
    [unanswered] = sim.mint(1)
    status, _ = await _get(session, sim.media_link(f"/media/{folder_of(unanswered)}/card.mp4"))
    assert status == 404
    assert [o for _, o in sim.media_log()] == ["not_found"] * 3


async def _first_two(
    config: SimulatorConfig, session: aiohttp.ClientSession, clock: FakeClock
) -> tuple[dict[str, Any], Any, RunningSimulator]:
    """Start a simulator, answer one token; return a FileInfo, the first download's response
    or exception, and the simulator (still usable only for its logs)."""
    async with running_simulator(config, clock=clock) as sim:
        [token] = sim.mint(1)
        info = (await _answer(sim, session, clock, token))["CompareResults[0].BestFrame"]
        first: Any
        try:
            async with session.get(info["Url"], timeout=aiohttp.ClientTimeout(total=0.2)) as resp:
                first = (resp.status, resp.headers.get("Content-Length"), await resp.read())
        except (TimeoutError, aiohttp.ClientError) as exc:
            first = exc
        second = await _get(session, info["Url"])
        assert second == (200, media_bytes(sim, token, "CompareResults[0].BestFrame"))
        return info, first, sim


def media_bytes(sim: RunningSimulator, token: str, field: str) -> bytes:
    simulator = sim.app[SIMULATOR_KEY]
    plan = simulator.plan_of(token)
    assert plan is not None
    return next(f for f in simulator.media.files(plan) if f.field == field).content()


def _one_fault(kind: str, **changes: Any) -> SimulatorConfig:
    return _config(media_faults=(kind,), media_fail_first=1, **changes)


async def test_truncated_states_the_full_length_and_hangs_up_halfway(
    session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    _, first, sim = await _first_two(_one_fault("truncated"), session, clock)
    assert isinstance(first, aiohttp.ClientPayloadError)
    assert [o for _, o in sim.media_log()] == ["fault:truncated", "ok"]


async def test_truncated_sends_about_half_of_the_stated_length(
    session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    async with running_simulator(_one_fault("truncated", media_scale=0.1), clock=clock) as sim:
        [token] = sim.mint(1)
        info = (await _answer(sim, session, clock, token))["CardVerifyResults[0].CardVideo"]
        async with session.get(info["Url"]) as resp:
            assert int(resp.headers["Content-Length"]) == info["Size"]
            received = await _count_until_the_error(resp)
    assert received == info["Size"] // 2


async def _count_until_the_error(resp: aiohttp.ClientResponse) -> int:
    received = 0
    try:
        async for chunk in resp.content.iter_any():
            received += len(chunk)
    except aiohttp.ClientPayloadError:
        return received
    raise AssertionError(f"the body ended cleanly after {received} bytes")


async def test_altered_is_full_length_with_one_byte_flipped(
    session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    info, first, sim = await _first_two(_one_fault("altered"), session, clock)
    status, length, body = first
    assert (status, int(length), len(body)) == (200, info["Size"], info["Size"])
    assert hashlib.md5(body).hexdigest() != info["MD5"]  # noqa: S324
    assert [o for _, o in sim.media_log()] == ["fault:altered", "ok"]


async def test_altered_differs_from_the_real_file_in_exactly_one_byte(
    session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    async with running_simulator(_one_fault("altered"), clock=clock) as sim:
        [token] = sim.mint(1)
        infos = await _answer(sim, session, clock, token)
        for field, info in infos.items():
            _, altered = await _get(session, info["Url"])
            _, real = await _get(session, info["Url"])
            assert real == media_bytes(sim, token, field)
            assert sum(a != b for a, b in zip(altered, real, strict=True)) == 1


@pytest.mark.parametrize(
    ("kind", "status", "text"),
    [("expired", 403, b"Request has expired"), ("5xx", 503, b"ServiceUnavailable")],
)
async def test_expired_and_5xx_faults_refuse_a_valid_link(
    session: aiohttp.ClientSession, clock: FakeClock, kind: str, status: int, text: bytes
) -> None:
    _, first, sim = await _first_two(_one_fault(kind), session, clock)
    assert first[0] == status
    assert text in first[2]
    assert [o for _, o in sim.media_log()] == [f"fault:{kind}", "ok"]


async def test_slow_holds_the_body_past_a_client_timeout(
    session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    # 5 s of holding back against the 0.2 s client timeout; the server's exit cancels the rest.
    _, first, sim = await _first_two(_one_fault("slow", media_slow_seconds=5.0), session, clock)
    assert isinstance(first, TimeoutError)
    assert [o for _, o in sim.media_log()] == ["fault:slow", "ok"]


async def test_fail_first_faults_exactly_the_first_download_of_each_file(
    session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    config = _config(media_faults=("5xx",), media_fail_first=1)
    async with running_simulator(config, clock=clock) as sim:
        urls = [
            info["Url"]
            for token in sim.mint(2)
            for info in (await _answer(sim, session, clock, token)).values()
        ]
        statuses = [(await _get(session, url))[0] for url in urls + urls + urls]
        by_path = sim.stats()["media"]["by_path"]
    n = len(urls)
    assert statuses == [503] * n + [200] * 2 * n
    assert by_path == {_path(url): {"fault:5xx": 1, "ok": 2} for url in urls}


async def test_fail_first_cycles_through_the_kinds(
    session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    config = _config(media_faults=("5xx", "expired"), media_fail_first=3)
    async with running_simulator(config, clock=clock) as sim:
        [token] = sim.mint(1)
        url = (await _answer(sim, session, clock, token))["CompareResults[0].LiveData"]["Url"]
        statuses = [(await _get(session, url))[0] for _ in range(4)]
    assert statuses == [503, 403, 503, 200]


async def test_the_fault_rate_is_seeded_so_runs_replay(
    session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    runs: list[list[str]] = []
    for _ in range(2):
        config = _config(seed=5, media_faults=("5xx", "expired"), media_fault_rate=0.5)
        async with running_simulator(config, clock=clock) as sim:
            [token] = sim.mint(1)
            for info in (await _answer(sim, session, clock, token)).values():
                await _get(session, info["Url"])
                await _get(session, info["Url"])
            runs.append([outcome for _, outcome in sim.media_log()])
    assert runs[0] == runs[1]
    assert {"ok", "fault:5xx", "fault:expired"} <= set(runs[0])


async def test_downloads_spend_no_quota_and_need_no_api_signature(
    session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    async with running_simulator(_config(rate=1), clock=clock) as sim:
        [token] = sim.mint(1)
        infos = await _answer(sim, session, clock, token)
        before = sim.stats()
        for info in infos.values():  # plain GETs, all in the same second as the query
            assert (await _get(session, info["Url"]))[0] == 200
        after = sim.stats()
    for key in ("requests", "by_action", "by_outcome", "throttled", "max_in_window"):
        assert after[key] == before[key], key
    assert after["max_in_window"] == 1
    assert after["media"]["requests"] == len(infos)
    assert after["media"]["by_outcome"] == {"ok": len(infos)}


async def test_the_media_log_and_stats_over_http_and_their_reset(
    sim: RunningSimulator, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    [token] = sim.mint(1)
    url = (await _answer(sim, session, clock, token))["CompareResults[0].BestFrame"]["Url"]
    await _get(session, url)
    await _get(session, url.replace("sign=", "sign=f"))
    path = _path(url)
    async with session.get(sim.endpoint + "/__media_log") as resp:
        assert await resp.json() == [[path, "ok"], [path, "bad_sign"]]
    assert sim.media_log() == [(path, "ok"), (path, "bad_sign")]
    async with session.get(sim.endpoint + "/__stats") as resp:
        media = (await resp.json())["media"]
    assert media == {
        "requests": 2,
        "by_outcome": {"ok": 1, "bad_sign": 1},
        "by_path": {path: {"ok": 1, "bad_sign": 1}},
        "log_dropped": 0,
    }
    async with session.post(sim.endpoint + "/__reset_stats") as resp:
        assert (await resp.json())["media"]["requests"] == 0
    assert sim.media_log() == []


def _subcommand_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="poller")
    sub = parser.add_subparsers(dest="command", required=True)
    configure_parser(sub.add_parser("simulate"))
    return parser.parse_args(["simulate", *argv])


def test_the_media_flags_reach_the_config() -> None:
    flags = (
        "--media-ttl 30 --media-scale 0.01 --media-faults truncated,slow "
        "--media-fault-rate 0.25 --media-fail-first 2 --media-slow-seconds 1.5"
    )
    config = config_from_args(_subcommand_args(flags.split(" ")), {})
    assert config == SimulatorConfig(
        media_ttl=30,
        media_scale=0.01,
        media_faults=("truncated", "slow"),
        media_fault_rate=0.25,
        media_fail_first=2,
        media_slow_seconds=1.5,
    )
    defaults = SimulatorConfig()
    assert (defaults.media_ttl, defaults.media_scale, defaults.media_fault_rate) == (600, 1, 0)
    assert (defaults.media_fail_first, defaults.media_slow_seconds) == (0, 5.0)


def test_an_unknown_media_fault_kind_exits_2_through_argparse(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["--media-faults", "truncated,bogus"])
    assert caught.value.code == 2
    assert "unknown fault kind(s) bogus" in capsys.readouterr().err
