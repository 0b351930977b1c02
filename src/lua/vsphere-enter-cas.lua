-- keys: 1
-- Move a vSphere enter-maintenance record on only if it is still task ARGV[1] in state ARGV[2]:
-- ARGV[3] the next record ('' = delete), ARGV[4] its TTL (s).
local v = redis.call('GET', KEYS[1])
if not v then return 0 end
local r = cjson.decode(v)
if r.task ~= ARGV[1] or r.state ~= ARGV[2] then return 0 end
if ARGV[3] == '' then redis.call('DEL', KEYS[1]) else redis.call('SET', KEYS[1], ARGV[3], 'EX', ARGV[4]) end
return 1
