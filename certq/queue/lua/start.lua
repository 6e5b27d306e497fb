--[[
  Take the lease on a job that BLMOVE just moved from a wait list to active. If the job is no longer in
  active, or someone else holds its lease, the stalled check moved it meanwhile: skip it. If the queue
  is paused the job goes back to the front of the list it came from.

  KEYS[1] source     (LIST)  the wait list BLMOVE took it from (wait, wait:high or wait:low)
  KEYS[2] active     (LIST)
  KEYS[3] failed     (LIST)
  KEYS[4] delayed    (ZSET)
  KEYS[5] meta       (HASH)
  KEYS[6] events     (STREAM)
  KEYS[7..] job:<id>, lock:<id> (declared for Cluster routing; the script builds the same names)
  ARGV[1] key base
  ARGV[2] events maxlen
  ARGV[3] job id
  ARGV[4] now, epoch ms
  ARGV[5] lease ms
  ARGV[6] lease token
  ARGV[7] consumer id
  ARGV[8] rate limits "group=tokens/period_ms;..."
  Returns {'ok', claimed_reply} | {'gone'} | {'paused'} | {'corrupt'} | {'cancelled'} | {'limited'}
]]
-- @include common
-- @include start
local id = ARGV[3]
if not redis.call('LPOS', K.active, id) or redis.call('EXISTS', lock_key(id)) == 1 then
  return {'gone'}
end
if redis.call('HGET', K.meta, 'paused') == '1' then
  redis.call('LREM', K.active, 1, id)
  redis.call('RPUSH', K.source, id)
  return {'paused'}
end
local buckets = new_buckets()
local plan = plan_start(id, ARGV[4], ARGV[8], buckets, {})
local status, f = apply_start(plan, true, ARGV[4], ARGV[5], ARGV[6], ARGV[7])
flush_buckets(buckets)
if status == 'ok' then return {'ok', claimed_reply(id, ARGV[6], f)} end
return {status}
