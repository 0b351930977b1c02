-- keys: 1
-- The operation ended: drop every reservation of op ARGV[1] that was not settled. Returns how many.
local all = redis.call('HGETALL', KEYS[1])
local prefix = ARGV[1] .. '|'
local n = 0
for i = 1, #all, 2 do
  if string.sub(all[i], 1, #prefix) == prefix and cjson.decode(all[i + 1]).done == nil then
    redis.call('HDEL', KEYS[1], all[i])
    n = n + 1
  end
end
return n
