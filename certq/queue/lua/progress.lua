--[[
  Record progress (JSON) on a job whose lease the caller holds.

  KEYS[1] events     (STREAM)
  KEYS[2..] job:<id>, lock:<id> (declared for Cluster routing; the script builds the same names)
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
local jk = job_key(id)
touch(jk)
redis.call('HSET', jk, 'progress', ARGV[5])
emit('progress', id, 'progress', ARGV[5])
return 1
