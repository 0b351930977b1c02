-- keys: 1
-- fenced
-- HSET one field, only while the run holds its job.
return redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
