-- One shared schedule per account and action (SPEC §7): GCRA, reserved atomically.
--
-- KEYS[1]  the schedule: a hash {tat, pace, slowed, interval}
-- ARGV[1]  interval_us  spacing between slots at the full shared pace (1e6 / paced rate)
-- ARGV[2]  successes    answers this caller got since its last reservation
-- ARGV[3]  throttled    1 if this caller was told RequestLimitExceeded since then
-- ARGV[4]  factor       the pace is multiplied by this on a throttle (0.7)
-- ARGV[5]  floor        ... but never below this fraction of the full pace (0.05)
-- ARGV[6]  cooldown_us  at most one lowering per this long, whoever reports it
-- ARGV[7]  hold_us      no recovery until this long after the last lowering
-- ARGV[8]  step         recovery per answer, as a fraction of the full pace
-- ARGV[9]  ttl_ms       a schedule idle this long past its last slot disappears
-- ARGV[10] known_tat_us the end of the schedule as this caller last saw it (0: never)
-- ARGV[11] known_pace   the pace this caller last saw (1 if never)
-- ARGV[12] gap_us       a lost schedule restarts this long after now (at the full pace)
-- ARGV[13] mode         "book" a slot, or "probe": check that this server runs the script
--                       and takes writes, booking nothing
--
-- Returns {wait_us, pace, lowered, now_us, tat_us, interval_us}: sleep wait_us, then send.
-- Redis's own TIME is the clock, so callers on machines whose clocks disagree still share one
-- schedule.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
if ARGV[13] == 'probe' then
  -- DEL is a write (a read-only replica refuses it) that leaves nothing behind.
  redis.call('DEL', KEYS[1] .. ':probe')
  return {0, '1', 0, now, 0, 0}
end

local interval = tonumber(ARGV[1])
local known_tat = tonumber(ARGV[10])
local state = redis.call('HMGET', KEYS[1], 'tat', 'pace', 'slowed', 'interval')
local tat, pace, slowed
if state[1] then
  tat = math.max(tonumber(state[1]), known_tat)
  pace = tonumber(state[2]) or 1
  slowed = tonumber(state[3]) or 0
  -- Pollers configured with different quotas: the strictest spacing wins.
  interval = math.max(interval, tonumber(state[4]) or 0)
else
  -- No schedule: the first use, or one lost (a restart without persistence, FLUSHALL, a deleted
  -- key). Slots booked from a lost schedule may still be ahead, unseen: start after them, past a
  -- gap that covers them (longer at a lowered pace) and past what this caller knew. The pace
  -- this caller last saw survives the loss; its hold starts again.
  pace = tonumber(ARGV[11])
  tat = math.max(now + tonumber(ARGV[12]) / pace, known_tat)
  slowed = 0
  if pace < 1 then
    slowed = now
  end
end

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
local next_tat = slot + interval / pace
redis.call('HSET', KEYS[1],
  'tat', string.format('%.0f', next_tat),
  'pace', string.format('%.17g', pace),
  'slowed', string.format('%.0f', slowed),
  'interval', string.format('%.0f', interval))
-- Kept for ttl_ms past the last reserved slot: a schedule reserved far ahead never expires early.
redis.call('PEXPIRE', KEYS[1], math.ceil(tonumber(ARGV[9]) + (next_tat - now) / 1000))
return {slot - now, string.format('%.17g', pace), lowered, now, string.format('%.0f', next_tat),
  string.format('%.0f', interval)}
