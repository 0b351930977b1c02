-- keys: 1
-- fenced
-- SET, only while the run holds its job.
return redis.call('SET', KEYS[1], ARGV[1])
