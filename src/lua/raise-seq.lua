-- keys: 1
-- Raise the operation id sequence to at least ARGV[1] (after a Redis that lost data).
local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
if cur < tonumber(ARGV[1]) then redis.call('SET', KEYS[1], ARGV[1]) end
return 1
