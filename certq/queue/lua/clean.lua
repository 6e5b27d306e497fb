--[[
  Delete finished jobs (completed or failed) that finished before a cutoff, oldest first, with their hashes.

  KEYS[1] completed  (LIST)
  KEYS[2] failed     (LIST)
  ARGV[1] key base
  ARGV[2] events maxlen
  ARGV[3] cutoff, epoch ms (jobs finished before it go)
  ARGV[4] most jobs to delete
  ARGV[5] which list: completed | failed
  Returns the number of jobs deleted
]]
-- @include common
local cutoff, limit = tonumber(ARGV[3]), tonumber(ARGV[4])
local list = K.completed
if ARGV[5] == 'failed' then list = K.failed end
if limit <= 0 then return 0 end
local ids = redis.call('LRANGE', list, -limit, -1)
local count = 0
for i = #ids, 1, -1 do
  local f = redis.call('HMGET', job_key(ids[i]), 'finished_at', 'dedupe_key')
  if (tonumber(f[1] or '0') or 0) >= cutoff then break end
  touch_dedupe(f[2])
  count = count + 1
end
for i = #ids, #ids - count + 1, -1 do
  redis.call('RPOP', list)
  clear_dedupe(job_key(ids[i]), ids[i])
  redis.call('DEL', job_key(ids[i]))
end
return count
