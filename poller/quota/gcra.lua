-- One shared schedule per account and action (SPEC §7): GCRA, reserved atomically.
--
-- KEYS[1]  the schedule: a hash {tat, base, slowed, hold, interval, strict_at, epoch}
-- ARGV[1]  interval_us  spacing between slots at the full shared pace (1e6 / paced rate)
-- ARGV[2]  throttled    1 if this caller was told RequestLimitExceeded since its last booking
-- ARGV[3]  factor       } the pace's rule (poller/quota/pace.py, which this mirrors): on a
-- ARGV[4]  floor        } throttle, x factor (not below floor, at most once per cooldown);
-- ARGV[5]  cooldown_us  } then `base` through the hold, then a straight climb back to the
-- ARGV[6]  hold_us      } full pace over ramp; a throttle before the pace is whole again
-- ARGV[7]  hold_max_us  } doubles the hold (up to hold_max), one after resets it
-- ARGV[8]  ramp_us      }
-- ARGV[9]  ttl_ms       a schedule idle this long past its last slot disappears
-- ARGV[10] known_tat_us the end of the schedule as this caller last saw it (0: never)
-- ARGV[11] known_pace   the pace this caller last saw (1 if never)
-- ARGV[12] gap_us       a lost schedule restarts this long after now (at the full pace)
-- ARGV[13] mode         "book" a slot, or "probe": check that this server runs the script
--                       and takes writes, booking nothing
-- ARGV[14] strict_us    a stricter caller's spacing holds this long after its last booking
--
-- Returns {wait_us, pace, lowered, now_us, tat_us, interval_us, epoch}: sleep wait_us, then
-- send. `epoch` names this schedule (when it was made): a slot booked from an older one, lost
-- since, is given up by its caller and booked again.
-- Redis's own TIME is the clock, so callers on machines whose clocks disagree still share one
-- schedule, one pace and one recovery.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
if ARGV[13] == 'probe' then
  -- DEL is a write (a read-only replica refuses it) that leaves nothing behind.
  redis.call('DEL', KEYS[1] .. ':probe')
  return {0, '1', 0, now, 0, 0, 0}
end

local interval = tonumber(ARGV[1])
local known_tat = tonumber(ARGV[10])
local hold_base = tonumber(ARGV[6])
local ramp = tonumber(ARGV[8])
local state = redis.call('HMGET', KEYS[1], 'tat', 'base', 'slowed', 'hold', 'interval',
  'strict_at', 'epoch')
local tat, base, slowed, hold, epoch
local strict_at = now
if state[1] then
  tat = math.max(tonumber(state[1]), known_tat)
  base = tonumber(state[2]) or 1
  slowed = tonumber(state[3]) or 0
  hold = tonumber(state[4]) or hold_base
  epoch = state[7] or string.format('%.0f', now)
  -- Pollers configured with different quotas: the strictest spacing wins while its caller is
  -- booking, and lapses a few seconds after it stops (one slow run must not slow the account
  -- for as long as the schedule lives).
  local stored = tonumber(state[5]) or 0
  local stored_at = tonumber(state[6]) or 0
  if stored > interval and now - stored_at < tonumber(ARGV[14]) then
    interval = stored
    strict_at = stored_at
  end
else
  -- No schedule: the first use, or one lost (a restart without persistence, FLUSHALL, a deleted
  -- key). Slots booked from a lost schedule may still be ahead, unseen: start after them, past a
  -- gap that covers them (longer at a lowered pace) and past what this caller knew. The pace
  -- this caller last saw survives the loss, and climbs back after a hold.
  base = tonumber(ARGV[11])
  -- (At most 3 gaps however low the pace: a live call must not wait a lowered pace's long gap.)
  tat = math.max(now + math.min(tonumber(ARGV[12]) / base, 3 * tonumber(ARGV[12])), known_tat)
  epoch = string.format('%.0f', now)
  slowed = 0
  hold = hold_base
  if base < 1 then
    slowed = now
  end
end

-- The pace now: base through the hold, then a straight climb to 1 over the ramp.
local function pace_at(when)
  local climb = when - slowed - hold
  if climb <= 0 then
    return base
  end
  if ramp <= 0 then
    return 1
  end
  return math.min(1, base + (1 - base) * climb / ramp)
end

local pace = pace_at(now)
local lowered = 0
if tonumber(ARGV[2]) > 0 and now - slowed >= tonumber(ARGV[5]) then
  local climbing = now < slowed + hold + ramp
  if climbing then
    hold = math.min(hold * 2, tonumber(ARGV[7]))
  else
    hold = hold_base
  end
  base = math.max(pace * tonumber(ARGV[3]), tonumber(ARGV[4]))
  slowed = now
  pace = base
  lowered = 1
end

-- The slot: the theoretical arrival time, or now if the schedule has fallen behind (an idle
-- spell gives no credit: nothing is saved up to be spent in a burst).
local slot = math.max(tat, now)
local next_tat = slot + interval / pace
redis.call('HSET', KEYS[1],
  'tat', string.format('%.0f', next_tat),
  'base', string.format('%.17g', base),
  'slowed', string.format('%.0f', slowed),
  'hold', string.format('%.0f', hold),
  'interval', string.format('%.0f', interval),
  'strict_at', string.format('%.0f', strict_at),
  'epoch', epoch)
-- Kept for ttl_ms past the last reserved slot: a schedule reserved far ahead never expires early.
redis.call('PEXPIRE', KEYS[1], math.ceil(tonumber(ARGV[9]) + (next_tat - now) / 1000))
return {slot - now, string.format('%.17g', pace), lowered, now, string.format('%.0f', next_tat),
  string.format('%.0f', interval), epoch}
