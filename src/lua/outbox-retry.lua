-- keys: 0
-- Slack outbox: the claimed head did not go; due again after delayMs. ARGV: prefix, lane, class,
-- token, id, delayMs, sure ('1': Slack certainly did not take it), down ('1': Slack unreachable:
-- every sender pauses, growing from basePauseMs to maxPauseMs), basePauseMs, maxPauseMs.
-- Returns the pause set (ms), or -1 for a stale token.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local P = ARGV[1] .. ':outbox:'
local lane, class, token, id = ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local delay, sure, down = tonumber(ARGV[6]), ARGV[7], ARGV[8]
if redis.call('GET', P .. 'claim:' .. lane) ~= token then return -1 end
redis.call('DEL', P .. 'claim:' .. lane)
if string.sub(lane, 1, 2) ~= 'u:' then
  redis.call('HINCRBY', P .. 'm:' .. id, 'n', 1)
  if sure == '1' then redis.call('HDEL', P .. 'm:' .. id, 'try') end
end
redis.call('ZADD', P .. 'ready:' .. class, now + delay, lane)
if down ~= '1' then return 0 end
local fails = redis.call('INCR', P .. 'fails')
redis.call('PEXPIRE', P .. 'fails', 600000)
local pause = math.min(tonumber(ARGV[10]), tonumber(ARGV[9]) * 2 ^ (fails - 1))
redis.call('SET', P .. 'pause', now + pause, 'PX', math.ceil(pause))
return pause
