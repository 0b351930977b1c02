-- keys: 1
-- fenced
-- Reserve a plan's moves all or nothing (replacing this operation's earlier reservations), or,
-- with ARGV[6] = 'add', add moves to them (a retried move whose reservation was dropped when it
-- failed): then this operation's other reservations that the facts do not show count as taken.
-- ARGV: facts time (ms), op id, wanted [target, MiB, available] list, entries, how long settled ones are kept (ms), mode.
-- Returns 'ok', or the first target short of memory as [target, reserved, want, available].
local all = redis.call('HGETALL', KEYS[1])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local factsAt = tonumber(ARGV[1])
local prefix = ARGV[2] .. '|'
local add = ARGV[6] == 'add'
local entries = cjson.decode(ARGV[4])
local adding = {}
for _, e in ipairs(entries) do adding[e[1]] = true end
local others = {}
local mine = {}
for i = 1, #all, 2 do
  local f, d = all[i], cjson.decode(all[i + 1])
  if string.sub(f, 1, #prefix) == prefix then
    table.insert(mine, f)
    if add and not adding[f] and (d.done == nil or d.done > factsAt) then
      others[d.target] = (others[d.target] or 0) + d.mib
    end
  elseif d.done ~= nil and d.done < now - tonumber(ARGV[5]) then
    redis.call('HDEL', KEYS[1], f)
  elseif d.done == nil or d.done > factsAt then
    others[d.target] = (others[d.target] or 0) + d.mib
  end
end
local want = cjson.decode(ARGV[3])
for _, w in ipairs(want) do
  if (others[w[1]] or 0) + w[2] > w[3] + 0.001 then
    return cjson.encode({ w[1], others[w[1]] or 0, w[2], w[3] })
  end
end
if not add then
  for _, f in ipairs(mine) do redis.call('HDEL', KEYS[1], f) end
end
for _, e in ipairs(entries) do redis.call('HSET', KEYS[1], e[1], e[2]) end
return 'ok'
