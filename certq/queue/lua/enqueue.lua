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
  ARGV[4..] per job, 8 values: id, payload JSON, priority, delay ms, max attempts, timeout ms ('' none),
            dedupe key ('' none), group ('' none)
  Returns per job {1 added | 0 existing, job id}
]]
-- @include common
local now = ARGV[3]
local out = {}
for i = 4, #ARGV, 8 do
  local id, payload, priority, delay = ARGV[i], ARGV[i + 1], ARGV[i + 2], tonumber(ARGV[i + 3])
  local dedupe, group, timeout = ARGV[i + 6], ARGV[i + 7], ARGV[i + 5]
  local existing
  if dedupe ~= '' then
    local other = redis.call('GET', base .. 'dedupe:' .. dedupe)
    if other then
      local state = redis.call('HGET', job_key(other), 'state')
      if state == 'waiting' or state == 'delayed' or state == 'active' then existing = other end
    end
  end
  local jk = job_key(id)
  if not existing and redis.call('EXISTS', jk) == 1 then existing = id end
  if existing then
    out[#out + 1] = {0, existing}
  else
    redis.call('HSET', jk, 'id', id, 'payload', payload, 'priority', priority, 'attempts', 0,
      'max_attempts', ARGV[i + 4], 'attempts_base', 0, 'created_at', now, 'stalls', 0)
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
