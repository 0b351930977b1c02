-- keys: 1
-- A migration ended: ARGV[2] 'done' marks reservation ARGV[1] settled now (Redis time), else drops it.
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if not cur then return 0 end
if ARGV[2] == 'done' then
  local d = cjson.decode(cur)
  local t = redis.call('TIME')
  d.done = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(d))
else
  redis.call('HDEL', KEYS[1], ARGV[1])
end
return 1
