--[[
  Take the lease on a job that BLMOVE just moved from a wait list to active. If the job is no longer in
  active, or someone else holds its lease, the stalled check moved it meanwhile: skip it. If the queue
  is paused the job goes back to the front of the list it came from.

  KEYS[1] wait_high  (LIST)
  KEYS[2] wait       (LIST)
  KEYS[3] wait_low   (LIST)
  KEYS[4] active     (LIST)
  KEYS[5] failed     (LIST)
  KEYS[6] delayed    (ZSET)
  KEYS[7] meta       (HASH)
  KEYS[8] events     (STREAM)
  KEYS[9..] job:<id>, lock:<id> (declared for Cluster routing; the script builds the same names)
  ARGV[1] key base
  ARGV[2] events maxlen
  ARGV[3] job id
  ARGV[4] now, epoch ms
  ARGV[5] lease ms
  ARGV[6] lease token
  ARGV[7] consumer id
  ARGV[8] rate limits "group=tokens/period_ms;..."
  ARGV[9] priority of the wait list BLMOVE took it from (high | normal | low)
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
  redis.call('RPUSH', wait_key(ARGV[9]), id)
  return {'paused'}
end
local buckets = new_buckets()
local plan = plan_start(id, ARGV[4], ARGV[8], buckets, {})
local status, f = apply_start(plan, true, ARGV[4], ARGV[5], ARGV[6], ARGV[7])
flush_buckets(buckets)
if status == 'ok' then return {'ok', claimed_reply(id, ARGV[6], f)} end
return {status}
