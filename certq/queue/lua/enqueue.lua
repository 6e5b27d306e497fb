--[[
  Add jobs. A job whose id exists, or whose dedupe key points at a job still waiting, delayed or
  active, is not added; that job's id is returned instead.

  KEYS[1] wait_high  (LIST)
  KEYS[2] wait       (LIST)
  KEYS[3] wait_low   (LIST)
  KEYS[4] delayed    (ZSET)
  KEYS[5] events     (STREAM)
  ARGV[1] key base
  ARGV[2] events maxlen
  ARGV[3] now, epoch ms
  ARGV[4..] one per job, 8 NUL-separated values: id, payload JSON, priority, delay ms, max attempts,
            timeout ms ('' none), dedupe key ('' none), group ('' none)
  Returns per job {1 added | 0 existing, job id}
]]
-- @include common
local now = ARGV[3]
local out = {}
for i = 4, #ARGV do
  local v = unpack_nul(ARGV[i])
  local id, payload, priority, delay = v[1], v[2], v[3], tonumber(v[4])
  local dedupe, group, timeout = v[7], v[8], v[6]
  local existing
  if dedupe ~= '' then
    local other = redis.call('GET', base .. 'dedupe:' .. dedupe)
    if other then
      local state = redis.call('HGET', job_key(other), 'state')
      if state == 'waiting' or state == 'delayed' or state == 'active' then existing = other end
    end
  end
  local jk = job_key(id)
  if not existing and redis.call('HSETNX', jk, 'id', id) == 0 then existing = id end
  if existing then
    out[#out + 1] = {0, existing}
  else
    redis.call('HSET', jk, 'payload', payload, 'priority', priority, 'attempts', 0,
      'max_attempts', v[5], 'attempts_base', 0, 'created_at', now, 'stalls', 0)
    if timeout ~= '' then redis.call('HSET', jk, 'timeout_ms', timeout) end
    if group ~= '' then redis.call('HSET', jk, 'group', group) end
    if dedupe ~= '' then
      redis.call('HSET', jk, 'dedupe_key', dedupe)
      redis.call('SET', base .. 'dedupe:' .. dedupe, id)
    end
    if delay > 0 then
      local due = string.format('%d', tonumber(now) + delay)
      redis.call('ZADD', K.delayed, due, id)
      redis.call('HSET', jk, 'state', 'delayed', 'due_at', due)
    else
      redis.call('LPUSH', wait_key(priority), id)
      redis.call('HSET', jk, 'state', 'waiting')
    end
    emit('added', id)
    out[#out + 1] = {1, id}
  end
end
return out
