#!lua flags=allow-key-locking
-- Upstash's key locking, as in gcra.lua: the one key this touches comes through KEYS.
-- Blocks a key until ARGV[1] (ms, the caller's clock; ARGV[2] is now_ms): gcra.lua denies
-- it until then. A shorter block never replaces a longer one; the marker expires with it.
local until_ms = tonumber(ARGV[1])
local now = tonumber(ARGV[2])
local current = tonumber(redis.call('GET', KEYS[1]) or now)
if until_ms > now and until_ms > current then
  redis.call('SET', KEYS[1], string.format('%d', until_ms),
    'PX', string.format('%d', until_ms - now))
end
return 1
