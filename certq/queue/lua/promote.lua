--[[
  Move delayed jobs that are due (score <= now) to the end of their wait list; or one job now.

  KEYS[1] wait_high  (LIST)
  KEYS[2] wait       (LIST)
  KEYS[3] wait_low   (LIST)
  KEYS[4] delayed    (ZSET)
  KEYS[5] events     (STREAM)
  KEYS[6..] job:<id> of the one job, if any (declared for Cluster routing)
  ARGV[1] key base
  ARGV[2] events maxlen
  ARGV[3] now, epoch ms
  ARGV[4] most jobs to move
  ARGV[5] one job id to promote whatever its due time ('' for all due jobs)
  Returns {jobs moved, due time of the next delayed job or -1}
]]
-- @include common
local ids
if ARGV[5] ~= '' then
  ids = {}
  if redis.call('ZSCORE', K.delayed, ARGV[5]) then ids[1] = ARGV[5] end
else
  ids = redis.call('ZRANGEBYSCORE', K.delayed, '-inf', ARGV[3], 'LIMIT', 0, tonumber(ARGV[4]))
end
local priorities = {}
for i, id in ipairs(ids) do priorities[i] = redis.call('HGET', job_key(id), 'priority') end
for i, id in ipairs(ids) do
  local jk = job_key(id)
  redis.call('ZREM', K.delayed, id)
  redis.call('LPUSH', wait_key(priorities[i]), id)
  redis.call('HSET', jk, 'state', 'waiting')
  redis.call('HDEL', jk, 'due_at')
  emit('waiting', id)
end
local nxt = redis.call('ZRANGE', K.delayed, 0, 0, 'WITHSCORES')
local next_due = -1
if nxt[2] then next_due = tonumber(nxt[2]) end
return {#ids, next_due}
