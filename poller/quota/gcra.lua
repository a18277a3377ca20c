-- One shared schedule per account and action (SPEC §7): GCRA, reserved atomically.
--
-- KEYS[1]  the schedule: a hash {tat, pace, slowed}
-- ARGV[1]  interval_us  spacing between slots at the full shared pace (1e6 / paced rate)
-- ARGV[2]  successes    answers this caller got since its last reservation
-- ARGV[3]  throttled    1 if this caller was told RequestLimitExceeded since then
-- ARGV[4]  factor       the pace is multiplied by this on a throttle (0.7)
-- ARGV[5]  floor        ... but never below this fraction of the full pace (0.05)
-- ARGV[6]  cooldown_us  at most one lowering per this long, whoever reports it
-- ARGV[7]  hold_us      no recovery until this long after the last lowering
-- ARGV[8]  step         recovery per answer, as a fraction of the full pace
-- ARGV[9]  ttl_ms       a schedule idle this long past its last slot disappears
--
-- Returns {wait_us, pace, lowered, now_us}: sleep wait_us, then send. Redis's own TIME is the
-- clock, so callers on machines whose clocks disagree still share one schedule.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local state = redis.call('HMGET', KEYS[1], 'tat', 'pace', 'slowed')
local tat = tonumber(state[1]) or now
local pace = tonumber(state[2]) or 1
local slowed = tonumber(state[3]) or 0

local interval = tonumber(ARGV[1])
local successes = tonumber(ARGV[2])
local lowered = 0
if tonumber(ARGV[3]) > 0 and now - slowed >= tonumber(ARGV[6]) then
  pace = math.max(pace * tonumber(ARGV[4]), tonumber(ARGV[5]))
  slowed = now
  lowered = 1
elseif successes > 0 and pace < 1 and now - slowed >= tonumber(ARGV[7]) then
  pace = math.min(1, pace + successes * tonumber(ARGV[8]))
end

-- The slot: the theoretical arrival time, or now if the schedule has fallen behind (an idle
-- spell gives no credit: nothing is saved up to be spent in a burst).
local slot = math.max(tat, now)
redis.call('HSET', KEYS[1],
  'tat', string.format('%.0f', slot + interval / pace),
  'pace', string.format('%.17g', pace),
  'slowed', string.format('%.0f', slowed))
-- Kept for ttl_ms past the last reserved slot: a schedule reserved far ahead never expires early.
redis.call('PEXPIRE', KEYS[1], math.ceil(tonumber(ARGV[9]) + (slot + interval / pace - now) / 1000))
return {slot - now, string.format('%.17g', pace), lowered, now}
