--[[
  Cancel a job from any process. Waiting or delayed: taken out and failed as cancelled. Active:
  flagged; the owner sees the flag at its next heartbeat and stops the work.

  KEYS[1] wait_high  (LIST)
  KEYS[2] wait       (LIST)
  KEYS[3] wait_low   (LIST)
  KEYS[4] delayed    (ZSET)
  KEYS[5] failed     (LIST)
  KEYS[6] events     (STREAM)
  KEYS[7..] job:<id> (declared for Cluster routing; the script builds the same name)
  ARGV[1] key base
  ARGV[2] events maxlen
  ARGV[3] job id
  ARGV[4] now, epoch ms
  Returns 'removed' | 'flagged' | 'finished' | 'not_found'
]]
-- @include common
local id, now = ARGV[3], ARGV[4]
local jk = job_key(id)
local f = redis.call('HMGET', jk, 'state', 'priority', 'dedupe_key')
local state = f[1]
if not state then return 'not_found' end
if state == 'completed' or state == 'failed' then return 'finished' end
if state == 'active' then
  redis.call('HSET', jk, 'cancel', '1')
  emit('cancel-requested', id)
  return 'flagged'
end
local listed
if state == 'delayed' then
  listed = redis.call('ZSCORE', K.delayed, id)
else
  listed = redis.call('LPOS', wait_key(f[2]), id)
end
if listed then touch_dedupe(f[3]) end
redis.call('HSET', jk, 'cancel', '1')
-- Not in its structure: a consumer's BLMOVE holds it between wait and its lease; the claim sees the flag.
if not listed then return 'flagged' end
if state == 'delayed' then
  redis.call('ZREM', K.delayed, id)
else
  redis.call('LREM', wait_key(f[2]), 1, id)
end
to_failed(jk, id, now, 'cancelled', 'CANCELLED')
return 'removed'
