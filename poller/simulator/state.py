"""The token store: what was minted, when, and how often each token was queried."""

from __future__ import annotations

import random
from collections import Counter

from .config import SimulatorConfig
from .outcomes import ApplyParams, TokenPlan, draw_plan, new_token


class TokenStore:
    """Minted tokens and their plans. Memory grows with minted tokens only (minting is paced)."""

    __slots__ = ("_config", "_plans", "_queries", "_rng")

    def __init__(self, config: SimulatorConfig) -> None:
        self._config = config
        # Its own stream, so fault and latency draws never shift which outcomes tokens get.
        self._rng = random.Random(f"tokens:{config.seed}")
        self._plans: dict[str, TokenPlan] = {}
        self._queries: Counter[str] = Counter()

    def mint(self, params: ApplyParams, *, issued_at: float) -> TokenPlan:
        token = new_token(self._rng)
        while token in self._plans:  # astronomically unlikely, but a collision would alias two
            token = new_token(self._rng)
        plan = draw_plan(self._rng, self._config, token=token, params=params, issued_at=issued_at)
        self._plans[token] = plan
        return plan

    def get(self, token: str) -> TokenPlan | None:
        plan = self._plans.get(token)
        if plan is not None:
            self._queries[token] += 1
        return plan

    def peek(self, token: str) -> TokenPlan | None:
        """The plan of a minted token without counting a query (for tests judging answers)."""
        return self._plans.get(token)

    def __len__(self) -> int:
        return len(self._plans)

    def queries_by_token_count(self) -> dict[str, int]:
        """How many minted tokens were queried n times: {"n": tokens}; "0" = never queried."""
        histogram = Counter(self._queries.values())
        histogram[0] = len(self._plans) - len(self._queries)
        return {str(n): histogram[n] for n in sorted(histogram) if histogram[n]}

    def reset_stats(self) -> None:
        self._queries.clear()

    def __repr__(self) -> str:
        return f"<TokenStore minted={len(self._plans)} queried={len(self._queries)}>"
