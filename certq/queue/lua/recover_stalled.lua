--[[
  Two-pass stalled check (Bull's): ids marked on the previous pass that are still in active and
  have no lease (its key expired: Redis TTL decides, never a clock) go back to the front of their
  wait list, or to failed once stalled more than max stalls times or when cancelled. Then every
  id now in active is marked for the next pass. A claim's BLMOVE->lease gap is far shorter than
  the interval, so a job is never taken in that gap. Only one consumer checks per interval.

  KEYS[1] wait_high      (LIST)
  KEYS[2] wait           (LIST)
  KEYS[3] wait_low       (LIST)
  KEYS[4] active         (LIST)
  KEYS[5] failed         (LIST)
  KEYS[6] stalled        (SET)
  KEYS[7] stalled_check  (STRING)
  KEYS[8] events         (STREAM)
  ARGV[1] key base
  ARGV[2] events maxlen
  ARGV[3] now, epoch ms
  ARGV[4] check interval ms
  ARGV[5] max stalls
  Returns {recovered ids, failed ids} or -1 when another consumer checked within the interval
]]
-- @include common
local now, max_stalls = ARGV[3], tonumber(ARGV[5])
if redis.call('EXISTS', K.stalled_check) == 1 then return -1 end
local moves = {}
for _, id in ipairs(redis.call('SMEMBERS', K.stalled)) do
  if redis.call('EXISTS', lock_key(id)) == 0 and redis.call('LPOS', K.active, id) then
    local f = redis.call('HMGET', job_key(id), 'cancel', 'priority', 'state', 'stalls', 'dedupe_key')
    local stalls = (tonumber(f[4]) or 0) + 1
    if f[1] == '1' or stalls > max_stalls then touch_dedupe(f[5]) end
    moves[#moves + 1] = {id, stalls, f}
  end
end
redis.call('SET', K.stalled_check, now, 'PX', ARGV[4])
local recovered, failed = {}, {}
for _, move in ipairs(moves) do
  local id, stalls, f = move[1], move[2], move[3]
  local jk = job_key(id)
  redis.call('LREM', K.active, 1, id)
  redis.call('HSET', jk, 'stalls', stalls)
  if f[1] == '1' then
    to_failed(jk, id, now, 'cancelled', 'CANCELLED')
    failed[#failed + 1] = id
  elseif stalls > max_stalls then
    to_failed(jk, id, now, 'job stalled more than ' .. max_stalls .. ' times (its consumer stopped renewing the lease)',
      'STALLED')
    failed[#failed + 1] = id
  else
    -- A stall does not use up an attempt; a job lost in the BLMOVE->lease gap never started one.
    if f[3] == 'active' then redis.call('HINCRBY', jk, 'attempts_base', 1) end
    redis.call('RPUSH', wait_key(f[2]), id)
    redis.call('HSET', jk, 'state', 'waiting', 'token', '')
    emit('stalled', id, 'stalls', stalls)
    recovered[#recovered + 1] = id
  end
end
redis.call('DEL', K.stalled)
local active = redis.call('LRANGE', K.active, 0, -1)
if #active > 0 then push_chunked('SADD', K.stalled, active) end
return {recovered, failed}
