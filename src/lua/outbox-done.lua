-- keys: 0
-- Slack outbox: the claimed head went to Slack (or was refused for good: ts "!"; or dropped: "").
-- ARGV: prefix, lane, class, token, id-or-target, channel, ts, ver, refTtlMs, answered ('1': Slack
-- answered, so it is reachable again). A stale token changes nothing. Lanes waiting for this post
-- become due.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local P = ARGV[1] .. ':outbox:'
local lane, class, token, id, ch, ts, ver, ttl = ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9]
if redis.call('GET', P .. 'claim:' .. lane) ~= token then return 0 end
redis.call('DEL', P .. 'claim:' .. lane)
local zkey = P .. 'ready:' .. class
if ARGV[10] == '1' then redis.call('DEL', P .. 'pause', P .. 'fails') end
if string.sub(lane, 1, 2) == 'u:' then
  if redis.call('HGET', P .. lane, 'ver') == ver then
    redis.call('DEL', P .. lane)
    redis.call('ZREM', zkey, lane)
  else
    redis.call('ZADD', zkey, now, lane)
  end
  return 1
end
local laneKey = P .. 'lane:' .. lane
if redis.call('LINDEX', laneKey, 0) == id then redis.call('LPOP', laneKey) end
redis.call('DEL', P .. 'm:' .. id)
if ts ~= '' then
  redis.call('SET', P .. 'ref:' .. id, ch .. '|' .. ts, 'PX', ttl)
  if ts ~= '!' then redis.call('SET', P .. 'rev:' .. ch .. ':' .. ts, 'o' .. id, 'PX', ttl) end
end
local w = P .. 'wait:' .. id
for _, e in ipairs(redis.call('SMEMBERS', w)) do
  local bar = string.find(e, '|', 1, true)
  redis.call('ZADD', P .. 'ready:' .. string.sub(e, 1, bar - 1), now, string.sub(e, bar + 1))
end
redis.call('DEL', w)
if redis.call('LLEN', laneKey) > 0 then redis.call('ZADD', zkey, now, lane) else redis.call('ZREM', zkey, lane) end
return 1
