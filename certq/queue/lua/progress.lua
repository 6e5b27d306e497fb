--[[
  Record progress (JSON) on a job whose lease the caller holds.

  KEYS[1] events     (STREAM)
  ARGV[1] key base
  ARGV[2] events maxlen
  ARGV[3] job id
  ARGV[4] lease token
  ARGV[5] progress JSON
  Returns 1 recorded, 0 lease lost
]]
-- @include common
local id = ARGV[3]
if redis.call('GET', lock_key(id)) ~= ARGV[4] then return 0 end
redis.call('HSET', job_key(id), 'progress', ARGV[5])
emit('progress', id, 'progress', ARGV[5])
return 1
