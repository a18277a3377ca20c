"""What the result codes mean (SPEC §1.4), and which of them are suspected attacks."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

#: SPEC §1.4: a non-zero Result mirrors the last CompareResult's ErrorCode. "-999" and "17" are the
#: project's default pending codes; "" stands for a pending line with an empty or missing Result.
CODE_MEANINGS: Final[Mapping[str, str]] = {
    "0": "passed",
    "1001": "liveness engine call failed",
    "1002": "suspected recording attack",
    "1004": "face detection failed",
    "1005": "liveness failed",
    "1201": "too dark/bright",
    "2004": "image size out of range",
    "2012": "several faces",
    "2013": "no or partial face",
    "2014": "quality too low",
    "2015": "comparison failed",
    "2016": "similarity under threshold",
    "2017": "face occluded",
    "-999": "not finished",
    "17": "not finished",
    "": "not finished (no result yet)",
}
UNKNOWN_CODE: Final = "unknown code"

#: The codes that say someone tried to fool the check, not that the face or the light was poor.
#: SPEC §1.4 names exactly one: 1002. The others (1001 engine call failed, 1004/2013 no face,
#: 1005 liveness failed, 2012 several faces, ...) are failures without a claim of an attack, so
#: counting them here would drown the one signal in ordinary failures. A code Tencent documents
#: as an attack later belongs in this table, and every count and the score follow it.
ATTACK_CODES: Final[Mapping[str, str]] = {"1002": CODE_MEANINGS["1002"]}


def meaning(code: str) -> str:
    return CODE_MEANINGS.get(code, UNKNOWN_CODE)
