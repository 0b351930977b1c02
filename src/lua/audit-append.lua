-- keys: 1
-- Append one audit entry to the stream KEYS[1] and index it by each target and by its job, in one
-- step, so `audit <host|vm|job>` reads its own entries however many others came after them.
-- ARGV[1] MINID (retention, ms), ARGV[2] the index keys' prefix, ARGV[3] retention (ms, the
-- index keys' TTL), ARGV[4] n, ARGV[5..4+n] the index names ('t:<target>' lowercased, 'op:<id>'),
-- then the entry's field/value pairs. Returns the entry id.
local n = tonumber(ARGV[4])
local fields = {}
for i = 5 + n, #ARGV do fields[#fields + 1] = ARGV[i] end
local id = redis.call('XADD', KEYS[1], 'MINID', ARGV[1], '*', unpack(fields))
local at = tonumber(string.match(id, '^(%d+)'))
for i = 5, 4 + n do
  local k = ARGV[2] .. ARGV[i]
  redis.call('ZADD', k, at, id)
  redis.call('ZREMRANGEBYSCORE', k, '-inf', '(' .. ARGV[1])
  redis.call('PEXPIRE', k, ARGV[3])
end
-- Entries older than this one were appended before the index existed (see queryAudit).
redis.call('SET', ARGV[2] .. 'since', id, 'NX')
return id
