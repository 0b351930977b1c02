-- keys: 4
-- Store a new operation (KEYS[1]) under the id INCR gave it, list it (KEYS[2], KEYS[3]) and keep
-- the id sequence (KEYS[4]) at least at that id. Run again when a failover may have lost the
-- first write: the new primary may meanwhile have given the id to another operation, which is
-- never overwritten. ARGV: id, json, createdAt, write id (unique per call).
-- Returns 1 (stored, or already stored by this call) or 0 (the id is another operation's).
if redis.call('EXISTS', KEYS[1]) == 1 and redis.call('HGET', KEYS[1], 'w') ~= ARGV[4] then return 0 end
redis.call('HSET', KEYS[1], 'json', ARGV[2], 'w', ARGV[4])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
redis.call('SADD', KEYS[3], ARGV[1])
local cur = tonumber(redis.call('GET', KEYS[4]) or '0')
if cur < tonumber(ARGV[1]) then redis.call('SET', KEYS[4], ARGV[1]) end
return 1
