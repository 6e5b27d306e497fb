--[[
  Replay failed jobs with a fresh budget of attempts: one job, or every failed job not cancelled.

  KEYS[1] wait_high  (LIST)
  KEYS[2] wait       (LIST)
  KEYS[3] wait_low   (LIST)
  KEYS[4] failed     (LIST)
  KEYS[5] events     (STREAM)
  KEYS[6..] job:<id> of the one job, if any (declared for Cluster routing)
  ARGV[1] key base
  ARGV[2] events maxlen
  ARGV[3] job id, or '' for all failed jobs
  Returns the number of jobs moved to wait
]]
-- @include common
-- Every job is read (and its dedupe key touched) before the first write; f comes from read().
local function read(id)
  return redis.call('HMGET', job_key(id), 'attempts', 'priority', 'dedupe_key', 'cancel')
end

local function replay(id, f)
  local jk = job_key(id)
  redis.call('HSET', jk, 'state', 'waiting', 'attempts_base', f[1] or 0, 'stalls', 0)
  redis.call('HDEL', jk, 'cancel', 'finished_at')
  if f[3] then redis.call('SET', dedupe_key(f[3]), id, 'NX') end
  redis.call('LPUSH', wait_key(f[2]), id)
  emit('retried', id)
end

if ARGV[3] ~= '' then
  if not redis.call('LPOS', K.failed, ARGV[3]) then return 0 end
  local f = read(ARGV[3])
  touch_dedupe(f[3])
  redis.call('LREM', K.failed, 1, ARGV[3])
  replay(ARGV[3], f)
  return 1
end
local ids = redis.call('LRANGE', K.failed, 0, -1)
local reads = {}
for i = #ids, 1, -1 do
  local f = read(ids[i])
  if f[4] ~= '1' then touch_dedupe(f[3]) end
  reads[i] = f
end
local keep, moved = {}, 0
for i = #ids, 1, -1 do
  if reads[i][4] == '1' then
    table.insert(keep, 1, ids[i])
  else
    replay(ids[i], reads[i])
    moved = moved + 1
  end
end
redis.call('DEL', K.failed)
if #keep > 0 then push_chunked('RPUSH', K.failed, keep) end
return moved
