#!lua flags=allow-key-locking
-- The flag above makes Upstash lock only the keys in KEYS instead of the whole database
-- (https://upstash.com/docs/redis/features/key-locking): every key this script touches
-- must come through KEYS. redis-server itself rejects the flag (the test shim strips it).
--
-- GCRA over several limits at once: admits only if every limit admits, and then consumes
-- one request from each of them; a denial consumes nothing. The same arithmetic, in the
-- same integer milliseconds, is `gcra::evaluate` in Rust (the embedded adapter).
--
-- KEYS, per limit i (1-based): KEYS[2i-1] its TAT (theoretical arrival time),
--                             KEYS[2i]   its block marker (set by block.lua).
-- ARGV: ARGV[1] now_ms (the caller's clock);
--       per limit i: ARGV[2i] emission interval ms, ARGV[2i+1] tolerance ms.
-- Returns {allowed (1/0), retry_after_ms, remaining_1, reset_after_ms_1, remaining_2, ...}.
local now = tonumber(ARGV[1])
local count = #KEYS / 2
local allowed = 1
local retry_after = 0
local limits = {}

for i = 1, count do
  local interval = tonumber(ARGV[2 * i])
  local tolerance = tonumber(ARGV[2 * i + 1])
  local tat = tonumber(redis.call('GET', KEYS[2 * i - 1]) or now)
  if tat < now then
    tat = now
  end
  local blocked_for = tonumber(redis.call('GET', KEYS[2 * i]) or now) - now
  local ahead = tat - now
  local limit = { tat = tat, interval = interval, ahead = ahead }
  if blocked_for > 0 then
    limit.admits = false
    limit.retry = blocked_for
    limit.reset = math.max(ahead, blocked_for)
  elseif ahead > tolerance then
    limit.admits = false
    limit.retry = ahead - tolerance
    limit.reset = ahead
  else
    limit.admits = true
    limit.spare = math.floor((tolerance - ahead) / interval)
  end
  if not limit.admits then
    allowed = 0
    retry_after = math.max(retry_after, limit.retry)
  end
  limits[i] = limit
end

local reply = { allowed, retry_after }
for i = 1, count do
  local limit = limits[i]
  if allowed == 1 then
    local ttl = limit.ahead + limit.interval
    redis.call('SET', KEYS[2 * i - 1], string.format('%d', limit.tat + limit.interval),
      'PX', string.format('%d', ttl))
    reply[2 * i + 1] = limit.spare
    reply[2 * i + 2] = ttl
  elseif limit.admits then
    reply[2 * i + 1] = limit.spare + 1
    reply[2 * i + 2] = limit.ahead
  else
    reply[2 * i + 1] = 0
    reply[2 * i + 2] = limit.reset
  end
end
return reply
