-- keys: 0
-- Slack outbox: claim the next lane that may send now. Slack not paused; classes in order (hi,
-- mid, lo); the longest-waiting due lane first; and only if the Slack budget of its head's method
-- allows a call now (taken here, never booked ahead). ARGV: prefix, lease (ms), token, scan,
-- plans (JSON method -> {i, b, c}). Returns {lane, class, id-or-target, meta, body, tried, ver,
-- thread-ref, expired, target} or {'', waitMs} (-1: nothing due).
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
-- GCRA take-if-allowed (as slack-reserve.lua, but never booking a slot ahead): ms to wait, 0 when taken.
local function take(bkey, blocked, now, interval, burst)
  local tat = tonumber(redis.call('GET', bkey) or '0')
  local until_ = tonumber(redis.call('GET', blocked) or '0')
  if tat < now then tat = now end
  if tat < until_ then tat = until_ end
  local allowed_at = tat - interval * (burst - 1)
  if allowed_at < until_ then allowed_at = until_ end
  if allowed_at > now then return allowed_at - now end
  local new_tat = tat + interval
  redis.call('SET', bkey, new_tat, 'PX', math.ceil(new_tat - now + interval * burst + 1000))
  return 0
end
local P = ARGV[1] .. ':outbox:'
local root = ARGV[1]
local lease = tonumber(ARGV[2])
local token = ARGV[3]
local scan = tonumber(ARGV[4])
local plans = cjson.decode(ARGV[5])
local pause = tonumber(redis.call('GET', P .. 'pause') or '0')
if pause > now then return {'', pause - now} end
local best = -1
for _, class in ipairs({'hi', 'mid', 'lo'}) do
  local zkey = P .. 'ready:' .. class
  local due = redis.call('ZRANGEBYSCORE', zkey, '-inf', now, 'LIMIT', 0, scan)
  for _, lane in ipairs(due) do
    local id, meta, body, ver, exp, tried
    local isSlot = string.sub(lane, 1, 2) == 'u:'
    if isSlot then
      local h = redis.call('HMGET', P .. lane, 'b', 'ver', 'exp')
      body, ver, exp = h[1], h[2], h[3]
      id = string.sub(lane, 3)
      meta = '{"kind":"update"}'
    else
      id = redis.call('LINDEX', P .. 'lane:' .. lane, 0)
      if id then
        local h = redis.call('HMGET', P .. 'm:' .. id, 'm', 'b', 'exp', 'try')
        meta, body, exp, tried = h[1], h[2], h[3], h[4]
      end
    end
    if not body then
      -- An empty lane or a vanished message: nothing to send from here.
      if not isSlot and id then redis.call('LPOP', P .. 'lane:' .. lane) end
      if isSlot or redis.call('LLEN', P .. 'lane:' .. lane) == 0 then redis.call('ZREM', zkey, lane) end
    else
      local kind = cjson.decode(meta).kind
      local method = ({post = 'chat.postMessage', update = 'chat.update', ephemeral = 'chat.postEphemeral', file = 'files.uploadV2'})[kind]
      local ch = cjson.decode(meta).channel or string.match(id, '^(.-):')
      local plan = plans[method]
      local scope = method
      if plan.c and ch then scope = method .. ':' .. ch end
      local wait = take(root .. ':slack:budget:' .. scope, root .. ':slack:blocked:' .. method, now, plan.i, plan.b)
      if wait == 0 then
        redis.call('SET', P .. 'claim:' .. lane, token, 'PX', lease)
        redis.call('ZADD', zkey, now + lease, lane)
        if not isSlot then redis.call('HSET', P .. 'm:' .. id, 'try', now) end
        local thread = cjson.decode(meta).thread
        local threadRef = ''
        if type(thread) == 'string' and string.sub(thread, 1, 1) == 'o' then
          threadRef = redis.call('GET', P .. 'ref:' .. string.sub(thread, 2)) or ''
        end
        local target = ''
        if isSlot then
          local ts = string.match(id, ':(.*)$')
          if string.sub(ts, 1, 1) == 'o' then target = redis.call('GET', P .. 'ref:' .. string.sub(ts, 2)) or '' end
        end
        local expired = ''
        if exp and tonumber(exp) < now then expired = '1' end
        return {lane, class, id, meta, body, tried or '', ver or '', threadRef, expired, target}
      end
      if best < 0 or wait < best then best = wait end
    end
  end
end
return {'', best}
