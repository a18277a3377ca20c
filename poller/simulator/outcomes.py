"""What a token's verification turned out to be, and the full `Response` body that says so.

Pure: a `TokenPlan` is drawn once (seeded) when a token is minted, or derived from a hash of the
token in any-token mode, and every later query renders the same body from it, so repeated polls
of one token agree with each other exactly as the real service's do: only `RequestId` and the
query strings of the media links (signed afresh, valid from `token_now`) change.
"""

from __future__ import annotations

import hashlib
import random
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .cards import card_info, fake_person
from .config import SimulatorConfig
from .links import LinkSigner
from .media import MediaFile, media_files

PENDING_RESULT = "-999"  # the sibling GetFaceIdResultIntl's "not finished" code (SPEC §1.4)
PENDING_DESCRIPTION = "The verification is not finished yet."

# SPEC §1.4: codes and their meaning; the weights are a plausible mix (liveness and similarity
# failures dominate in practice; an engine error is rare).
FAILURES: dict[str, tuple[str, int]] = {
    "1001": ("Failed to call the liveness detection engine.", 2),
    "1002": ("Suspected recording or replay attack.", 6),
    "1004": ("Face detection failed.", 8),
    "1005": ("Liveness detection failed.", 20),
    "1201": ("The light is too dark or too bright.", 6),
    "2004": ("The size of the uploaded face image is out of range.", 2),
    "2012": ("Several faces were detected.", 4),
    "2013": ("No face or an incomplete face was detected.", 10),
    "2014": ("The image quality is too low.", 10),
    "2015": ("Face comparison failed.", 6),
    "2016": ("The similarity did not reach the passing standard.", 20),
    "2017": ("The face is occluded.", 6),
}
_FAILURE_CODES = tuple(FAILURES)
_FAILURE_WEIGHTS = tuple(weight for _, weight in FAILURES.values())
# The comparison itself ran (and is charged) for a pass and for these two; the others stop at
# liveness.
_COMPARE_CODES = frozenset({"0", "2015", "2016"})
# Real OCR warning codes: -9101 incomplete border, -9102 photocopy, -9103 screen photo,
# -9104 tampered, -9107 reflection.
_WARN_CODES = (-9101, -9102, -9103, -9104, -9107)

SDK_VERSIONS = ("BASIC", "ENHANCED", "PRO", "PLUS")
_DEVICE_LEVEL_VERSIONS = frozenset({"ENHANCED", "PLUS"})


@dataclass(frozen=True, slots=True)
class ApplyParams:
    """The ApplySdkVerificationToken parameters the simulator honours (SPEC §1.5)."""

    extra: str = ""
    check_mode: int = 1
    id_card_type: str = "HK"
    sdk_version: str = "BASIC"
    retry_limit: int = 5


class ParamError(ValueError):
    """A request parameter the real API would refuse; carries the API error code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def parse_apply_params(body: Mapping[str, Any]) -> ApplyParams:
    """Validate the honoured parameters; every other parameter is accepted and ignored."""
    extra = body.get("Extra", "")
    if not isinstance(extra, str):
        raise ParamError("InvalidParameterValue", "Extra must be a string.")
    if len(extra) > 1000:
        raise ParamError("InvalidParameterValue", "Extra must not exceed 1000 characters.")
    check_mode = _int_param(body, "CheckMode", 1, 1, 3)
    retry_limit = _int_param(body, "RetryLimit", 5, 1, 5)
    id_card_type = body.get("IdCardType", "HK")
    if not isinstance(id_card_type, str) or not id_card_type:
        raise ParamError("InvalidParameterValue", "IdCardType must be a non-empty string.")
    sdk_version = body.get("SdkVersion", "BASIC")
    if sdk_version not in SDK_VERSIONS:
        raise ParamError(
            "InvalidParameterValue", f"SdkVersion must be one of {', '.join(SDK_VERSIONS)}."
        )
    return ApplyParams(extra, check_mode, id_card_type, str(sdk_version), retry_limit)


def _int_param(body: Mapping[str, Any], name: str, default: int, low: int, high: int) -> int:
    value = body.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ParamError("InvalidParameterValue", f"{name} must be an integer in {low}..{high}.")
    return value


@dataclass(frozen=True, slots=True)
class TokenPlan:
    """Everything later queries of one token need; the body is rendered from it on demand."""

    token: str
    result: str  # the settled Result: "0" or a SPEC §1.4 failure code
    attempts: int  # how many CompareResults the settled body carries
    pending_seconds: float  # 0 = settled from the start
    issued_at: float  # wall clock at issue; age = (wall clock + clock_offset) - issued_at
    params: ApplyParams
    device_info_level: str
    detail_seed: int

    def is_pending(self, token_now: float) -> bool:
        return token_now - self.issued_at < self.pending_seconds


def draw_plan(
    rng: random.Random,
    config: SimulatorConfig,
    *,
    token: str,
    params: ApplyParams,
    issued_at: float,
) -> TokenPlan:
    """Draw one token's fate: pass, a failure code, or pending first and then one of those."""
    pending = rng.random() < config.pending_share
    if rng.random() < config.pass_share:
        result = "0"
    else:
        result = rng.choices(_FAILURE_CODES, _FAILURE_WEIGHTS)[0]
    limit = params.retry_limit
    if result == "0":
        attempts = rng.randint(1, limit)
    else:  # most users who fail use up their retries; some give up earlier
        attempts = limit if rng.random() < 0.7 else rng.randint(1, limit)
    level = str(rng.randint(1, 4)) if params.sdk_version in _DEVICE_LEVEL_VERSIONS else ""
    return TokenPlan(
        token=token,
        result=result,
        attempts=attempts,
        pending_seconds=config.pending_seconds if pending else 0.0,
        issued_at=issued_at,
        params=params,
        device_info_level=level,
        detail_seed=rng.getrandbits(64),
    )


def plan_for_any_token(token: str, config: SimulatorConfig, *, issued_at: float) -> TokenPlan:
    """Any-token mode: the same token gets the same fate on every request and every restart."""
    digest = hashlib.sha256(f"{config.seed}\0{token}".encode()).digest()
    rng = random.Random(int.from_bytes(digest, "big"))
    return draw_plan(rng, config, token=token, params=ApplyParams(), issued_at=issued_at)


def answers_unknown_code(token: str, config: SimulatorConfig) -> bool:
    """Whether `token` is answered with `config.unknown_code`: a hash of seed and token picks
    `unknown_code_share` of all tokens, independent of every seeded stream (so turning the knob
    on changes no token's drawn outcome, no fault and no latency)."""
    if config.unknown_code_share <= 0.0:
        return False
    digest = hashlib.sha256(f"unknown-code:{config.seed}\0{token}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64 < config.unknown_code_share


def new_token(rng: random.Random) -> str:
    """Token strings vary in shape (SPEC §1.5): UUIDs and the 8-5-6-4-12 official example."""
    shape = rng.random()
    if shape < 0.5:
        return str(uuid.UUID(int=rng.getrandbits(128), version=4)).upper()
    if shape < 0.8:
        hexes = f"{rng.getrandbits(140):035X}"
        return "-".join((hexes[:8], hexes[8:13], hexes[13:19], hexes[19:23], hexes[23:35]))
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def plan_media(plan: TokenPlan, scale: float) -> tuple[MediaFile, ...]:
    """The files a settled answer for `plan` links to (SPEC §8), in answer order."""
    return media_files(
        plan.token,
        plan.detail_seed,
        with_cards=plan.params.check_mode != 3,
        attempts=plan.attempts,
        scale=scale,
    )


# Pure renders (tests, no server) sign with this; a running simulator passes its own signer.
_UNBOUND_SIGNER = LinkSigner(b"unbound", 600.0)


def render_result(
    plan: TokenPlan,
    *,
    token_now: float,
    request_id: str,
    signer: LinkSigner | None = None,
    media_scale: float = 1.0,
) -> dict[str, Any]:
    """The `Response` object of GetSdkVerificationResult (SPEC §1.3) for this plan, now."""
    if plan.is_pending(token_now):
        return {
            "Result": PENDING_RESULT,
            "Description": PENDING_DESCRIPTION,
            "ChargeCount": 0,
            "CardVerifyResults": [],
            "CompareResults": [],
            "Extra": plan.params.extra,
            "DeviceInfoLevel": "",
            "RequestId": request_id,
        }
    rng = random.Random(plan.detail_seed)
    media = _Media(plan_media(plan, media_scale), signer or _UNBOUND_SIGNER, token_now)
    cards = [] if plan.params.check_mode == 3 else [_card_result(rng, plan, media)]
    compares = _compare_results(rng, plan, media)
    return {
        "Result": plan.result,
        "Description": "Success" if plan.result == "0" else FAILURES[plan.result][0],
        "ChargeCount": sum(1 for c in compares if c["IsNeedCharge"]),
        "CardVerifyResults": cards,
        "CompareResults": compares,
        "Extra": plan.params.extra,
        "DeviceInfoLevel": plan.device_info_level,
        "RequestId": request_id,
    }


class _Media:
    """FileInfo objects: the files' MD5 and size, and links signed afresh (SPEC §1.3, §8)."""

    def __init__(self, files: tuple[MediaFile, ...], signer: LinkSigner, now: float) -> None:
        self._files = {f.field: f for f in files}
        self._signer = signer
        self._now = now

    def file(self, field: str) -> dict[str, Any]:
        found = self._files[field]
        return {
            "Url": self._signer.url(found.path, self._now),
            "MD5": found.md5,
            "Size": found.size,
        }


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _card_result(rng: random.Random, plan: TokenPlan, media: _Media) -> dict[str, Any]:
    person = fake_person(rng)
    raw, normal = card_info(plan.params.id_card_type, person)
    is_edit = rng.random() < 0.1
    warnings = [rng.choice(_WARN_CODES)] if rng.random() < 0.1 else []
    edits = (
        [
            {
                "FieldName": "Birthday",
                "OriginalFieldValue": person.birthday.replace("-", "/"),
                "RevisedFieldValue": person.birthday,
            }
        ]
        if is_edit
        else []
    )
    return {
        "IsPass": not warnings,
        "IsEdit": is_edit,
        "CardVideo": media.file("CardVerifyResults[0].CardVideo"),
        "CardImage": media.file("CardVerifyResults[0].CardImage"),
        "CardInfoOcrJson": media.file("CardVerifyResults[0].CardInfoOcrJson"),
        "RequestId": _uuid(rng),
        "CardInfo": raw,
        "NormalCardInfo": normal,
        "WarnCardInfos": warnings,
        "EditDetails": edits,
    }


def _compare_results(rng: random.Random, plan: TokenPlan, media: _Media) -> list[dict[str, Any]]:
    # Every attempt before the last one failed (that is why the user retried).
    codes = [rng.choices(_FAILURE_CODES, _FAILURE_WEIGHTS)[0] for _ in range(plan.attempts - 1)]
    codes.append(plan.result)
    return [_compare(rng, code, i, media) for i, code in enumerate(codes)]


def _compare(rng: random.Random, code: str, index: int, media: _Media) -> dict[str, Any]:
    message = "Success" if code == "0" else FAILURES[code][0]
    compared = code in _COMPARE_CODES
    live_ok = compared  # the comparison only runs after liveness passed
    if code == "0":
        sim = round(rng.uniform(80.0, 99.5), 2)
    elif code == "2016":
        sim = round(rng.uniform(30.0, 69.9), 2)
    else:
        sim = 0.0
    return {
        "ErrorCode": code,
        "ErrorMsg": message,
        "LiveData": media.file(f"CompareResults[{index}].LiveData"),
        "LiveVideo": media.file(f"CompareResults[{index}].LiveVideo"),
        "ActionVideo": media.file(f"CompareResults[{index}].ActionVideo"),
        "BestFrame": media.file(f"CompareResults[{index}].BestFrame"),
        "ProfileImage": media.file(f"CompareResults[{index}].ProfileImage"),
        "CardInfoInputJson": media.file(f"CompareResults[{index}].CardInfoInputJson"),
        "LiveErrorCode": "0" if live_ok else code,
        "LiveErrorMsg": "Success" if live_ok else message,
        "CompareErrorCode": code if compared else "",
        "CompareErrorMsg": message if compared else "",
        "Sim": sim,
        "IsNeedCharge": compared,
        "RequestId": _uuid(rng),
        "LivenessInfoTag": ["02"] if code == "1002" else [],
    }
