-- keys: 1
-- fenced
-- Write a drain's ledger unless it is already there (a resumed job keeps the first snapshot);
-- never over another drain's open ledger. ARGV[1] the ledger, ARGV[2] op id. Returns the ledger kept.
local cur = redis.call('GET', KEYS[1])
if cur then
  local doc = cjson.decode(cur)
  if tostring(doc.opId) == ARGV[2] then return cur end
  if doc.status == 'draining' or doc.status == 'drained' or doc.status == 'restoring' then return cur end
end
redis.call('SET', KEYS[1], ARGV[1])
return ARGV[1]
