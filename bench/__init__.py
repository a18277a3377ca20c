"""The benchmark suite behind `make bench`: one module per measurement, `docs/benchmarks.md` out.

quota    quota use of the real `poller run` under a strict simulated quota
cpu      CPU ms per token of the whole `poller run` next to a bare-aiohttp floor
sdk      CPU ms per token of the official SDK next to the poller's
scale    peak RSS over 1,000,000 tokens; loading resume state from 1,000,000 lines
startup  launch to first request
"""
