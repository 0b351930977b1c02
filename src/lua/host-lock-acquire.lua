-- keys: 1
-- fenced
-- Compare-and-set: take the host lock if it is free or already this operation's (same op id).
-- ARGV[1] the lock document, ARGV[2] op id, ARGV[3] TTL ms. Returns false, or the holder's document.
local cur = redis.call('GET', KEYS[1])
if cur then
  local ok, doc = pcall(cjson.decode, cur)
  if not ok or tostring(doc.opId) ~= ARGV[2] then return cur end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
return false
