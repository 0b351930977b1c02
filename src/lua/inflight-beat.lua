-- keys: 1
-- Beat (ARGV[3] = beat number) or let go (ARGV[3] = 'release') of VM ARGV[1], only while the
-- marker is still run token ARGV[2]'s.
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if not cur or string.sub(cur, 1, #ARGV[2] + 1) ~= ARGV[2] .. '|' then return 0 end
if ARGV[3] == 'release' then redis.call('HDEL', KEYS[1], ARGV[1]) else redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. '|' .. ARGV[3]) end
return 1
