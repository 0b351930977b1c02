-- keys: 2
-- Release a mutex only if this holder's token still owns it, and wake one waiter.
-- KEYS[1] the mutex, KEYS[2] its wake list; ARGV[1] token, ARGV[2] how long a wake-up is kept (ms).
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
redis.call('DEL', KEYS[2])
redis.call('RPUSH', KEYS[2], '1')
redis.call('PEXPIRE', KEYS[2], ARGV[2])
return 1
