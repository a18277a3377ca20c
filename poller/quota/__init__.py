"""The account's quota, shared: several pollers (and the app backend) on one schedule (SPEC §7).

The 20/s quota belongs to the account, not to a process. `schedule` keeps one GCRA schedule per
account and action in Redis and reserves slots from it atomically (`gcra.lua`, on Redis's own
clock); `shared` is the public `SharedQuota` an app backend takes its live calls from;
`neighbours` notices, without Redis, other runs on this machine that spend the same quota.
"""
