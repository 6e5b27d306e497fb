--[[
  Fail the current attempt of a job whose lease the caller holds: back to delayed for a retry after
  `delay`, or to failed when the error is final, the attempts are spent or the job was cancelled.

  KEYS[1] active     (LIST)
  KEYS[2] failed     (LIST)
  KEYS[3] delayed    (ZSET)
  KEYS[4] events     (STREAM)
  KEYS[5..] job:<id>, lock:<id>, dedupe:<key> if any (declared for Cluster routing)
  ARGV[1] key base
  ARGV[2] events maxlen
  ARGV[3] job id
  ARGV[4] lease token
  ARGV[5] now, epoch ms
  ARGV[6] error message
  ARGV[7] error category ('' for none)
  ARGV[8] error entry (JSON object appended to the job's errors: attempt, at, message, category, consumer, stack?)
  ARGV[9] final (1|0)
  ARGV[10] retry delay ms
  Returns 'delayed' | 'failed' | 'lost'
]]
-- @include common
local id, token, now = ARGV[3], ARGV[4], ARGV[5]
local lk = lock_key(id)
if redis.call('GET', lk) ~= token then return 'lost' end
local jk = job_key(id)
local f = redis.call('HMGET', jk, 'attempts', 'max_attempts', 'attempts_base', 'cancel', 'dedupe_key')
local spent = (tonumber(f[1]) or 0) - (tonumber(f[3]) or 0) >= (tonumber(f[2]) or 1)
local reason, category
if f[4] == '1' then
  reason, category = 'cancelled', 'CANCELLED'
elseif ARGV[9] == '1' or spent then
  reason, category = ARGV[6], ARGV[7]
end
if reason then touch_dedupe(f[5]) end
redis.call('LREM', K.active, 1, id)
redis.call('DEL', lk)
append_error(jk, ARGV[8])
if reason then
  to_failed(jk, id, now, reason, category)
  return 'failed'
end
local due = tonumber(now) + tonumber(ARGV[10])
redis.call('ZADD', K.delayed, due, id)
redis.call('HSET', jk, 'state', 'delayed', 'token', '', 'due_at', string.format('%d', due), 'last_error', ARGV[6],
  'category', ARGV[7])
emit('retrying', id, 'dueAt', string.format('%d', due), 'reason', ARGV[6])
return 'delayed'
