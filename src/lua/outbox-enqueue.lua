-- keys: 0
-- Slack outbox (bot/slack/outbox.ts): enqueue messages at the tail of a lane, in order.
-- ARGV: prefix, lane, class (hi|mid), waitFor (post id the lane's thread needs first, or ''),
-- ttl (ms), write id (unique per call), then one "meta\nbody" per message. Returns the new ids.
-- Run again with the same write id (a failover may have lost the first run, or not): the ids the
-- first run gave, nothing enqueued twice. Clock: Redis TIME.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local P = ARGV[1] .. ':outbox:'
local lane, class, waitFor = ARGV[2], ARGV[3], ARGV[4]
local exp = now + tonumber(ARGV[5])
local wkey = P .. 'w:' .. ARGV[6]
local done = redis.call('GET', wkey)
if done then return cjson.decode(done) end
local laneKey = P .. 'lane:' .. lane
local wasEmpty = redis.call('LLEN', laneKey) == 0
local ids = {}
for i = 7, #ARGV do
  local id = redis.call('INCR', P .. 'seq')
  local cut = string.find(ARGV[i], '\n', 1, true)
  redis.call('HSET', P .. 'm:' .. id, 'm', string.sub(ARGV[i], 1, cut - 1), 'b', string.sub(ARGV[i], cut + 1), 'lane', lane, 'exp', exp, 'at', now)
  redis.call('RPUSH', laneKey, id)
  ids[#ids + 1] = id
end
if wasEmpty then
  if waitFor ~= '' and redis.call('EXISTS', P .. 'ref:' .. waitFor) == 0 then
    redis.call('SADD', P .. 'wait:' .. waitFor, class .. '|' .. lane)
  else
    redis.call('ZADD', P .. 'ready:' .. class, 'NX', now, lane)
  end
end
redis.call('SET', wkey, cjson.encode(ids), 'PX', 600000)
return ids
