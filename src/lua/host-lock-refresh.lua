-- keys: 1
-- fenced
-- Refresh (ARGV[2] = TTL ms) or release (ARGV[2] = 'release') the host lock, only if it is still op ARGV[1]'s.
local cur = redis.call('GET', KEYS[1])
if not cur then return 0 end
local ok, doc = pcall(cjson.decode, cur)
if not ok or tostring(doc.opId) ~= ARGV[1] then return 0 end
if ARGV[2] == 'release' then redis.call('DEL', KEYS[1]) else redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 1
