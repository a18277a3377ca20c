"""The benchmark suite behind `make bench`: one module per measurement, `docs/benchmarks.md` out.

quota    quota use of the real `poller run` under a strict simulated quota
cpu      CPU ms per token next to a bare-aiohttp floor and the official SDK
scale    peak RSS over 1,000,000 tokens; loading resume state from 1,000,000 lines
startup  launch to first request
"""
