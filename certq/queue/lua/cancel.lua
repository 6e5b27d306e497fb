--[[
  Cancel a job from any process. Waiting or delayed: taken out and failed as cancelled. Active:
  flagged; the owner sees the flag at its next heartbeat and stops the work.

  KEYS[1] wait_high  (LIST)
  KEYS[2] wait       (LIST)
  KEYS[3] wait_low   (LIST)
  KEYS[4] delayed    (ZSET)
  KEYS[5] failed     (LIST)
  KEYS[6] events     (STREAM)
  ARGV[1] key base
  ARGV[2] events maxlen
  ARGV[3] job id
  ARGV[4] now, epoch ms
  Returns 'removed' | 'flagged' | 'finished' | 'not_found'
]]
-- @include common
local id, now = ARGV[3], ARGV[4]
local jk = job_key(id)
local f = redis.call('HMGET', jk, 'state', 'priority')
local state = f[1]
if not state then return 'not_found' end
if state == 'completed' or state == 'failed' then return 'finished' end
redis.call('HSET', jk, 'cancel', '1')
if state == 'active' then
  emit('cancel-requested', id)
  return 'flagged'
end
local removed = 0
if state == 'delayed' then
  removed = redis.call('ZREM', K.delayed, id)
else
  removed = redis.call('LREM', wait_key(f[2]), 1, id)
end
-- Not in its structure: a consumer's BLMOVE holds it between wait and its lease; the claim sees the flag.
if removed == 0 then return 'flagged' end
to_failed(jk, id, now, 'cancelled', 'CANCELLED')
return 'removed'
