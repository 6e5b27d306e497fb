--[[
  Give a job back without counting the attempt (shutdown): to the front of its wait list.

  KEYS[1] wait_high  (LIST)
  KEYS[2] wait       (LIST)
  KEYS[3] wait_low   (LIST)
  KEYS[4] active     (LIST)
  KEYS[5] events     (STREAM)
  KEYS[6..] job:<id>, lock:<id> (declared for Cluster routing; the script builds the same names)
  ARGV[1] key base
  ARGV[2] events maxlen
  ARGV[3] job id
  ARGV[4] lease token
  Returns 1 released, 0 lease lost
]]
-- @include common
local id, token = ARGV[3], ARGV[4]
local lk = lock_key(id)
if redis.call('GET', lk) ~= token then return 0 end
local jk = job_key(id)
local priority = redis.call('HGET', jk, 'priority')
redis.call('LREM', K.active, 1, id)
redis.call('DEL', lk)
redis.call('HINCRBY', jk, 'attempts_base', 1)
redis.call('RPUSH', wait_key(priority), id)
redis.call('HSET', jk, 'state', 'waiting', 'token', '')
emit('released', id)
return 1
