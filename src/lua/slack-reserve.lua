-- keys: 2
-- GCRA slot for one Slack method (KEYS[1]), never before its Retry-After block (KEYS[2]) ends.
-- The clock is Redis's (TIME), one for every process. ARGV[1] interval (ms), ARGV[2] burst.
-- Returns how many ms the caller waits; the slot is reserved.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
local until_ = tonumber(redis.call('GET', KEYS[2]) or '0')
if tat < now then tat = now end
if tat < until_ then tat = until_ end
local allowed_at = tat - interval * (burst - 1)
if allowed_at < now then allowed_at = now end
-- Retry-After is a floor: the burst allowance never lets a call go before it has passed.
if allowed_at < until_ then allowed_at = until_ end
local new_tat = tat + interval
redis.call('SET', KEYS[1], new_tat, 'PX', math.ceil(new_tat - now + interval * burst + 1000))
return allowed_at - now
