-- keys: 1
-- fenced
-- Claim VM ARGV[1] of the in-flight hash for run token ARGV[2]: 'ok', or the current marker when
-- another run holds it. ARGV[3]: a stale marker the caller may take over.
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if cur and string.sub(cur, 1, #ARGV[2] + 1) ~= ARGV[2] .. '|' and cur ~= ARGV[3] then return cur end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. '|0')
return 'ok'
