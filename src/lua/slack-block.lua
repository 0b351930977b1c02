-- keys: 1
-- Slack said Retry-After ARGV[1] seconds: nobody calls the method before then (Redis time).
-- Never shortens a longer block another process recorded.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local until_ = now + math.floor(tonumber(ARGV[1]) * 1000)
local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
if cur >= until_ then return 0 end
redis.call('SET', KEYS[1], until_, 'PX', until_ - now + 1000)
return 1
