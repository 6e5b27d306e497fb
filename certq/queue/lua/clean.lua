--[[
  Delete finished jobs (completed or failed) that finished before a cutoff, oldest first, with their hashes.

  KEYS[1] list       (LIST)  completed or failed
  KEYS[2] events     (STREAM)
  ARGV[1] key base
  ARGV[2] events maxlen
  ARGV[3] cutoff, epoch ms (jobs finished before it go)
  ARGV[4] most jobs to delete
  Returns the number of jobs deleted
]]
-- @include common
local cutoff, limit = tonumber(ARGV[3]), tonumber(ARGV[4])
local deleted = 0
while deleted < limit do
  local id = redis.call('LINDEX', K.list, -1)
  if not id then break end
  local finished = tonumber(redis.call('HGET', job_key(id), 'finished_at') or '0') or 0
  if finished >= cutoff then break end
  redis.call('RPOP', K.list)
  clear_dedupe(job_key(id), id)
  redis.call('DEL', job_key(id))
  deleted = deleted + 1
end
return deleted
