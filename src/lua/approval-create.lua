-- keys: 3
-- Store a new approval request (KEYS[1]) under the id INCR gave it, index it as pending (KEYS[2])
-- and keep the id sequence (KEYS[3]) at least at that id. Run again when a failover may have lost
-- the first write: the new primary's sequence can be behind, so the id may meanwhile belong to
-- another request; that one is never overwritten.
-- ARGV: id, json, version, meta, expiresAt, write id (unique per call).
-- Returns 1 (stored, or already stored by this call) or 0 (the id is another request's).
if redis.call('EXISTS', KEYS[1]) == 1 and redis.call('HGET', KEYS[1], 'w') ~= ARGV[6] then return 0 end
redis.call('HSET', KEYS[1], 'json', ARGV[2], 'v', ARGV[3], 'meta', ARGV[4], 'w', ARGV[6])
redis.call('ZADD', KEYS[2], ARGV[5], ARGV[1])
local cur = tonumber(redis.call('GET', KEYS[3]) or '0')
if cur < tonumber(ARGV[1]) then redis.call('SET', KEYS[3], ARGV[1]) end
return 1
