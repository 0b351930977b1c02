-- Put in front of every script marked `-- fenced` (src/jobs/fence.ts): the caller's last key is
-- its job's BullMQ lock key and its last argument the token it holds it with ('' = not fenced).
-- Both are taken off KEYS/ARGV; a run that lost its job is refused before the script acts.
local __fk = table.remove(KEYS)
local __ft = table.remove(ARGV)
if __ft ~= '' and redis.call('GET', __fk) ~= __ft then return redis.error_reply('FERRY_FENCED') end
