-- keys: 1
-- Replace hash field ARGV[1] with ARGV[3] only if it still holds ARGV[2].
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
  return 1
end
return 0
