"""The aiohttp.web application: one POST endpoint that behaves like FaceID, plus `/__stats` (and
`/__log`, the arrivals, when `request_log_size` > 0), and the media behind the answers' links
(`GET /media/...`, logged at `/__media_log`; see `mediaserve`).

Order of work per request mirrors a real gateway and SPEC §5: the bounded network leg, then the
common checks (action, version, region, signature), then the quota window counts the arrival,
then faults (a faulted request still spent quota), then the action, then the heavy-tailed rest of
the latency. API errors are HTTP 200 with `Content-Type: application/json`, like the real thing.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from .auth import verify
from .config import ACTION_APPLY, ACTION_RESULT, ACTIONS, API_VERSION, REGIONS, SimulatorConfig
from .faults import FaultPlan
from .mediaserve import MediaServer
from .outcomes import (
    ApplyParams,
    ParamError,
    TokenPlan,
    answers_unknown_code,
    parse_apply_params,
    plan_for_any_token,
    render_result,
)
from .quota import Quota
from .requestlog import LoggedRequest, RequestLog, token_of
from .state import TokenStore
from .stats import Stats

JSON_CONTENT_TYPE = "application/json"
MAX_TOKEN_LENGTH = 256  # SPEC §1: longer tokens are refused

_HTML_502 = (
    "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    "<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n"
    "</body>\r\n</html>\r\n"
)
_HTML_503 = (
    "<html>\r\n<head><title>503 Service Temporarily Unavailable</title></head>\r\n<body>\r\n"
    "<center><h1>503 Service Temporarily Unavailable</h1></center>\r\n</body>\r\n</html>\r\n"
)


@dataclass(frozen=True, slots=True)
class Decision:
    """What the simulator answers for one token once it has settled (see `Simulator.decision`).

    `status` is "passed" or "failed" (then `result` is the settled Result code), "unknown_code"
    or "invalid_token" or "expired" (then `error_code` is the API error code answered);
    `pending_until` is the token-clock time before which a query answers pending (None: never
    pending)."""

    status: str
    result: str | None = None
    error_code: str | None = None
    pending_until: float | None = None


class Simulator:
    """All mutable state of one running simulator; the handlers are its methods."""

    def __init__(self, config: SimulatorConfig, clock: Callable[[], float]) -> None:
        self.config = config
        self.clock = clock
        self.started_at = clock()
        self.store = TokenStore(config)
        self.quota = Quota(config.capacity)
        self.stats = Stats()
        # Separate seeded streams: adding a fault never changes which outcome a token gets.
        self.faults = FaultPlan(config, random.Random(f"faults:{config.seed}"))
        self._request_ids = random.Random(f"request-ids:{config.seed}")
        # Drawn only when throttle_share > 0, so the knob off leaves every other draw alone.
        self._throttles = random.Random(f"throttles:{config.seed}")
        self.request_log = RequestLog(config.request_log_size) if config.request_log_size else None
        self.media = MediaServer(config, self.token_now)

    def token_now(self) -> float:
        """The clock for token age and pending: wall clock plus --clock-offset."""
        return self.clock() + self.config.clock_offset

    def request_id(self) -> str:
        return str(uuid.UUID(int=self._request_ids.getrandbits(128), version=4))

    def error(self, code: str, message: str, outcome: str) -> web.Response:
        self.stats.by_outcome[outcome] += 1
        return _json({"Error": {"Code": code, "Message": message}, "RequestId": self.request_id()})

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        pre = self.faults.pre_count_delay()
        if pre:
            await asyncio.sleep(pre)
        headers = request.headers
        action = headers.get("X-TC-Action", "")
        # Unknown action names are lumped together: a client cannot grow this dict without bound.
        self.stats.by_action[
            action if action in ACTIONS else "<missing>" if not action else "<unknown>"
        ] += 1
        refusal = self._check_common(action, headers.get("X-TC-Version"), headers)
        if refusal is not None:
            return refusal
        auth_error = (
            verify(
                headers=headers,
                body=body,
                now=self.clock(),
                credentials=self.config.credentials,
                max_skew=self.config.max_skew_seconds,
            )
            if self.config.check_signatures
            else None
        )
        if auth_error is not None:
            self.stats.signature_failures += 1
            return self.error(auth_error.code, auth_error.message, "auth_error")
        if action == ACTION_RESULT and self._injected_throttle():
            # Another client spent the quota: rejected before the window counts this request.
            self.stats.throttled += 1
            self.stats.injected_throttles += 1
            return self.error(
                "RequestLimitExceeded",
                f"Your current request is over the limit of {self.config.capacity} requests "
                f"per second for {action}.",
                "throttled",
            )
        if not self.quota.try_admit(action, self.clock()):
            self.stats.throttled += 1
            return self.error(
                "RequestLimitExceeded",
                f"Your current request is over the limit of {self.config.capacity} requests "
                f"per second for {action}.",
                "throttled",
            )
        if action == ACTION_RESULT:
            fault = self.faults.pick()
            if fault is not None:
                return await self._fault(fault, request, body)
        response = self._run_action(action, body)
        post = self.faults.post_count_delay()
        if post:
            await asyncio.sleep(post)
        return response

    def _injected_throttle(self) -> bool:
        share = self.config.throttle_share
        return share > 0.0 and self._throttles.random() < share

    def mint_local(self, params: ApplyParams | None = None) -> str:
        """Mint a token without an HTTP round trip or quota (tests that need many, fast)."""
        plan = self.store.mint(params or ApplyParams(), issued_at=self.clock())
        self.stats.tokens_minted += 1
        self.stats.by_outcome["minted"] += 1
        return plan.token

    def decision(self, token: str) -> Decision:
        """What a query for `token` answers once settled, without counting it as a query.

        Faults and throttles aside (they are per request, not per token). The same order of
        checks as `_result_body`, so the two cannot disagree."""
        if not token.strip():
            return Decision("invalid_token", error_code="InvalidParameterValue")
        if len(token) > MAX_TOKEN_LENGTH or any(ord(c) < 32 for c in token):
            return Decision("invalid_token", error_code="InvalidParameterValue.BizTokenIllegal")
        plan = self._plan(token, count=False)
        if plan is None:
            return Decision("invalid_token", error_code="InvalidParameterValue.BizTokenIllegal")
        if answers_unknown_code(token, self.config):
            return Decision("unknown_code", error_code=self.config.unknown_code)
        if self.token_now() - plan.issued_at > self.config.token_ttl_seconds:
            return Decision("expired", error_code="InvalidParameterValue.BizTokenExpired")
        return Decision(
            "passed" if plan.result == "0" else "failed",
            result=plan.result,
            pending_until=plan.issued_at + plan.pending_seconds if plan.pending_seconds else None,
        )

    def plan_of(self, token: str) -> TokenPlan | None:
        """The plan of `token` (minted, or any-token), without counting a query."""
        return self._plan(token, count=False)

    def _plan(self, token: str, *, count: bool) -> TokenPlan | None:
        if self.config.any_token:
            return plan_for_any_token(token, self.config, issued_at=self.started_at)
        return self.store.get(token) if count else self.store.plan(token)

    def _check_common(self, action: str, version: str | None, headers: Any) -> web.Response | None:
        if not action:
            return self.error(
                "MissingParameter", "The request is missing the X-TC-Action header.", "bad_request"
            )
        if action not in ACTIONS:
            return self.error(
                "InvalidAction", f"The action `{action}` is not supported.", "bad_request"
            )
        if not version:
            return self.error(
                "MissingParameter", "The request is missing the X-TC-Version header.", "bad_request"
            )
        if version != API_VERSION:
            return self.error(
                "NoSuchVersion",
                f"The version `{version}` does not exist; use {API_VERSION}.",
                "bad_request",
            )
        region = headers.get("X-TC-Region")
        if not region:
            return self.error(
                "MissingParameter", "The request is missing the X-TC-Region header.", "bad_request"
            )
        if region not in REGIONS:
            return self.error(
                "UnsupportedRegion",
                f"The region `{region}` is not supported; use one of {', '.join(sorted(REGIONS))}.",
                "bad_request",
            )
        return None

    def _run_action(self, action: str, body: bytes) -> web.Response:
        try:
            params = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError):
            params = None
        if not isinstance(params, dict):
            return self.error(
                "InvalidParameter", "The request body must be a JSON object.", "bad_request"
            )
        if action == ACTION_APPLY:
            return self._apply(params)
        return self._result(params)

    def _apply(self, params: dict[str, Any]) -> web.Response:
        try:
            parsed = parse_apply_params(params)
        except ParamError as exc:
            return self.error(exc.code, exc.message, "bad_request")
        # Issued on the plain wall clock: --clock-offset then ages every token, fresh ones too.
        plan = self.store.mint(parsed, issued_at=self.clock())
        self.stats.tokens_minted += 1
        self.stats.by_outcome["minted"] += 1
        return _json({"SdkToken": plan.token, "RequestId": self.request_id()})

    def _result_body(self, params: dict[str, Any]) -> tuple[dict[str, Any], str]:
        """(Response object, outcome label) for one GetSdkVerificationResult call."""
        token = params.get("SdkToken")
        if token is None:
            return _error_body("InvalidParameter", "SdkToken is required.", self), "invalid_param"
        if not isinstance(token, str) or not token.strip():
            return (
                _error_body("InvalidParameterValue", "SdkToken must be a non-empty string.", self),
                "invalid_param",
            )
        if len(token) > MAX_TOKEN_LENGTH or any(ord(c) < 32 for c in token):
            return (
                _error_body("InvalidParameterValue.BizTokenIllegal", "Invalid SdkToken.", self),
                "invalid_token",
            )
        plan = self._plan(token, count=True)
        if plan is None:
            return (
                _error_body("InvalidParameterValue.BizTokenIllegal", "Invalid SdkToken.", self),
                "invalid_token",
            )
        if answers_unknown_code(token, self.config):
            return (
                _error_body(
                    self.config.unknown_code,
                    "The operation failed for a reason this client has not seen before.",
                    self,
                ),
                "unknown_code",
            )
        now = self.token_now()
        if now - plan.issued_at > self.config.token_ttl_seconds:
            return (
                _error_body(
                    "InvalidParameterValue.BizTokenExpired",
                    "The SdkToken has expired (tokens can be queried for 72 hours).",
                    self,
                ),
                "expired",
            )
        rendered = self.render(plan, now, self.request_id())
        if plan.is_pending(now):
            return rendered, "pending"
        self.media.hand_out(plan)
        return rendered, "passed" if plan.result == "0" else "failed"

    def render(self, plan: TokenPlan, token_now: float, request_id: str) -> dict[str, Any]:
        """The answer for `plan` at `token_now`, its media links signed by this simulator."""
        return render_result(
            plan,
            token_now=token_now,
            request_id=request_id,
            signer=self.media.signer,
            media_scale=self.config.media_scale,
        )

    def snapshot(self) -> dict[str, Any]:
        """The `/__stats` document: the API's counters, and the media downloads' under "media"."""
        return {**self.stats.snapshot(self.quota, self.store), "media": self.media.snapshot()}

    def _result(self, params: dict[str, Any]) -> web.Response:
        body, outcome = self._result_body(params)
        self.stats.by_outcome[outcome] += 1
        return _json(body)

    async def _fault(self, kind: str, request: web.Request, body: bytes) -> web.StreamResponse:
        self.stats.by_outcome[f"fault:{kind}"] += 1
        if kind == "internal":
            return _json(
                _error_body("InternalError", "An internal error occurred. Please retry.", self)
            )
        if kind == "html502":
            return web.Response(status=502, body=_HTML_502.encode(), content_type="text/html")
        if kind == "503":
            return web.Response(status=503, body=_HTML_503.encode(), content_type="text/html")
        if kind == "reset":
            # Drop the connection without a byte of response, as a load balancer reset does.
            transport = request.transport
            if transport is not None:
                transport.abort()
            # Writing to the aborted transport fails with ConnectionError, which aiohttp takes
            # quietly as "client went away": no traceback in the server log.
            return web.Response(status=200)
        params = _load_object(body)
        result, _ = self._result_body(params)
        if kind == "truncated":
            whole = _encode(result)
            return _raw_json(whole[: len(whole) // 2])
        # stall: longer than any sane client timeout, then a normal answer nobody waits for.
        await asyncio.sleep(self.config.stall_seconds)
        return _json(result)

    async def stats_handler(self, _request: web.Request) -> web.Response:
        return web.json_response(self.snapshot())

    async def log_handler(self, _request: web.Request) -> web.Response:
        if self.request_log is None:
            return web.json_response(
                {"error": "the request log is off; start the simulator with --request-log-size N"},
                status=404,
            )
        return web.json_response(self.request_log.snapshot())

    async def log_arrival(self, request: web.Request) -> LoggedRequest | None:
        """Log the arrival now, then the token once the body is read (it is cached for handle)."""
        if self.request_log is None:
            return None
        entry = self.request_log.arrive(request.headers.get("X-TC-Action", ""))
        entry.token = token_of(await request.read())
        return entry

    async def reset_stats_handler(self, _request: web.Request) -> web.Response:
        self.stats.reset()
        self.quota.reset_stats()
        self.store.reset_stats()
        self.media.reset_stats()
        return web.json_response(self.snapshot())

    def __repr__(self) -> str:
        return (
            f"<Simulator requests={self.stats.requests} in_flight={self.stats.in_flight} "
            f"{self.store!r} {self.quota!r}>"
        )


def _error_body(code: str, message: str, sim: Simulator) -> dict[str, Any]:
    return {"Error": {"Code": code, "Message": message}, "RequestId": sim.request_id()}


def _load_object(body: bytes) -> dict[str, Any]:
    try:
        loaded = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return {}
    return loaded if isinstance(loaded, dict) else {}


def _encode(payload: dict[str, Any]) -> bytes:
    return json.dumps({"Response": payload}, ensure_ascii=False).encode("utf-8")


def _raw_json(data: bytes) -> web.Response:
    # Exactly `application/json`, no charset: the official SDK only looks for errors then.
    return web.Response(body=data, headers={"Content-Type": JSON_CONTENT_TYPE})


def _json(payload: dict[str, Any]) -> web.Response:
    return _raw_json(_encode(payload))


SIMULATOR_KEY = web.AppKey("simulator", Simulator)


def make_app(
    config: SimulatorConfig, *, clock: Callable[[], float] | None = None
) -> web.Application:
    """Build the simulator app; `clock` (wall-clock seconds) is injectable so tests own time."""
    simulator = Simulator(config, clock or time.time)
    app = web.Application()
    app[SIMULATOR_KEY] = simulator

    async def api(request: web.Request) -> web.StreamResponse:
        simulator.stats.enter(simulator.clock())
        logged: LoggedRequest | None = None
        try:
            if simulator.request_log is not None:  # off by default: not even an await then
                logged = await simulator.log_arrival(request)
            return await simulator.handle(request)
        finally:
            simulator.stats.leave()
            if logged is not None and simulator.request_log is not None:
                simulator.request_log.answer(logged)

    # `POST /?` (the official async SDK) has path "/" and an empty query: the same route.
    app.router.add_post("/", api)
    app.router.add_get("/__stats", simulator.stats_handler)
    app.router.add_post("/__reset_stats", simulator.reset_stats_handler)
    app.router.add_get("/__log", simulator.log_handler)
    # Outside `api`: a download is no API request, spends no quota and needs no TC3 signature.
    app.router.add_get("/media/{folder}/{name:.+}", simulator.media.handle)
    app.router.add_get("/__media_log", simulator.media.log_handler)
    return app
