-- keys: 2
-- Replace an approval request (KEYS[1]) if its version is still ARGV[1]; keep the pending index
-- (KEYS[2]) in step. ARGV: expected version, json, new version, id, score ('' = not pending),
-- write id (unique per call). Returns -1 (gone), 0 (changed meanwhile) or 1. Idempotent: run
-- again after a failover that may have lost it, it answers 1 when the request holds this very
-- write (its write id), never for another caller's write of the same state.
local v = redis.call('HGET', KEYS[1], 'v')
if not v then return -1 end
if v ~= ARGV[1] and not (v == ARGV[3] and redis.call('HGET', KEYS[1], 'w') == ARGV[6]) then return 0 end
redis.call('HSET', KEYS[1], 'json', ARGV[2], 'v', ARGV[3], 'w', ARGV[6])
if ARGV[5] == '' then
  redis.call('ZREM', KEYS[2], ARGV[4])
else
  redis.call('ZADD', KEYS[2], ARGV[5], ARGV[4])
end
return 1
