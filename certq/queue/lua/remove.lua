--[[
  Delete a job that is not active: out of its structure, its hash and dedupe key gone.

  KEYS[1] wait_high  (LIST)
  KEYS[2] wait       (LIST)
  KEYS[3] wait_low   (LIST)
  KEYS[4] delayed    (ZSET)
  KEYS[5] completed  (LIST)
  KEYS[6] failed     (LIST)
  KEYS[7] events     (STREAM)
  KEYS[8..] job:<id>, lock:<id> (declared for Cluster routing; the script builds the same names)
  ARGV[1] key base
  ARGV[2] events maxlen
  ARGV[3] job id
  Returns 1 removed, 0 no such job, 'active' (refused: cancel it instead)
]]
-- @include common
local id = ARGV[3]
local jk, lk = job_key(id), lock_key(id)
local f = redis.call('HMGET', jk, 'state', 'priority', 'dedupe_key')
local state = f[1]
if not state then return 0 end
if state == 'active' then return 'active' end
touch(lk)
touch_dedupe(f[3])
if state == 'delayed' then redis.call('ZREM', K.delayed, id)
elseif state == 'completed' then redis.call('LREM', K.completed, 1, id)
elseif state == 'failed' then redis.call('LREM', K.failed, 1, id)
else redis.call('LREM', wait_key(f[2]), 1, id) end
clear_dedupe(jk, id)
redis.call('DEL', jk, lk)
emit('removed', id)
return 1
