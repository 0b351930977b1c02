-- keys: 0
-- Slack outbox: the latest state for a posted message (card updates coalesce). ARGV: prefix,
-- channel, ts (Slack's, or "o<id>"), body, ttl (ms). A post not tried yet just takes the new body;
-- otherwise the message's slot holds the newest body and its lane goes (once the post has a ts)
-- in the low class, so progress refreshes never hold up first posts or replies.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local P = ARGV[1] .. ':outbox:'
local ch, ts, body = ARGV[2], ARGV[3], ARGV[4]
local exp = now + tonumber(ARGV[5])
local lane = 'u:' .. ch .. ':' .. ts
local slot = P .. lane
local pending = string.sub(ts, 1, 1) == 'o' and redis.call('EXISTS', P .. 'ref:' .. string.sub(ts, 2)) == 0
if pending then
  local mk = P .. 'm:' .. string.sub(ts, 2)
  if redis.call('EXISTS', mk) == 1 and redis.call('HEXISTS', mk, 'try') == 0 then
    redis.call('HSET', mk, 'b', body)
    if redis.call('EXISTS', slot) == 0 then return 'merged' end
  end
end
local fresh = redis.call('EXISTS', slot) == 0
redis.call('HINCRBY', slot, 'ver', 1)
redis.call('HSET', slot, 'b', body, 'exp', exp)
if fresh then
  if pending then
    redis.call('SADD', P .. 'wait:' .. string.sub(ts, 2), 'lo|' .. lane)
  else
    redis.call('ZADD', P .. 'ready:lo', 'NX', now, lane)
  end
end
return 'queued'
