--[[
  Replay failed jobs with a fresh budget of attempts: one job, or every failed job not cancelled.

  KEYS[1] wait_high  (LIST)
  KEYS[2] wait       (LIST)
  KEYS[3] wait_low   (LIST)
  KEYS[4] failed     (LIST)
  KEYS[5] events     (STREAM)
  ARGV[1] key base
  ARGV[2] events maxlen
  ARGV[3] job id, or '' for all failed jobs
  Returns the number of jobs moved to wait
]]
-- @include common
local function replay(id)
  local jk = job_key(id)
  local f = redis.call('HMGET', jk, 'attempts', 'priority', 'dedupe_key')
  redis.call('HSET', jk, 'state', 'waiting', 'attempts_base', f[1] or 0, 'stalls', 0)
  redis.call('HDEL', jk, 'cancel', 'finished_at')
  if f[3] then redis.call('SET', base .. 'dedupe:' .. f[3], id, 'NX') end
  redis.call('LPUSH', wait_key(f[2]), id)
  emit('retried', id)
end

if ARGV[3] ~= '' then
  if redis.call('LREM', K.failed, 1, ARGV[3]) == 0 then return 0 end
  replay(ARGV[3])
  return 1
end
local ids = redis.call('LRANGE', K.failed, 0, -1)
local keep, moved = {}, 0
for i = #ids, 1, -1 do
  if redis.call('HGET', job_key(ids[i]), 'cancel') == '1' then
    table.insert(keep, 1, ids[i])
  else
    replay(ids[i])
    moved = moved + 1
  end
end
redis.call('DEL', K.failed)
if #keep > 0 then push_chunked('RPUSH', K.failed, keep) end
return moved
