-- keys: 2
-- Count a user's command in its window (KEYS[1]); over ARGV[2], say so once per flood (KEYS[2]).
-- ARGV[1] the window's TTL (ms). Returns {count, tell}.
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
if n <= tonumber(ARGV[2]) then return {n, 0} end
if redis.call('SET', KEYS[2], '1', 'NX', 'PX', ARGV[1]) then return {n, 1} end
redis.call('PEXPIRE', KEYS[2], ARGV[1])
return {n, 0}
