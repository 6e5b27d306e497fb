--[[
  Add jobs. A job whose id exists, or whose dedupe key points at a job still waiting, delayed or
  active, is not added; that job's id is returned instead.

  KEYS[1] wait_high  (LIST)
  KEYS[2] wait       (LIST)
  KEYS[3] wait_low   (LIST)
  KEYS[4] delayed    (ZSET)
  KEYS[5] events     (STREAM)
  KEYS[6..] per job: job:<id>, dedupe:<key> if any (declared for Cluster routing)
  ARGV[1] key base
  ARGV[2] events maxlen
  ARGV[3] now, epoch ms
  ARGV[4..] one per job, 8 NUL-separated values: id, payload JSON, priority, delay ms, max attempts,
            timeout ms ('' none), dedupe key ('' none), group ('' none)
  Returns per job {1 added | 0 existing, job id}
]]
-- @include common
local now = ARGV[3]
local jobs, exists = {}, {}
for i = 4, #ARGV do
  local v = unpack_nul(ARGV[i])
  jobs[#jobs + 1] = v
  if exists[v[1]] == nil then exists[v[1]] = redis.call('EXISTS', job_key(v[1])) == 1 end
  if v[7] ~= '' then
    local other = redis.call('GET', dedupe_key(v[7]))
    if other then touch(job_key(other)) end
  end
end
local out = {}
for _, v in ipairs(jobs) do
  local id, payload, priority, delay = v[1], v[2], v[3], tonumber(v[4])
  local dedupe, group, timeout = v[7], v[8], v[6]
  local existing
  if dedupe ~= '' then
    local other = redis.call('GET', dedupe_key(dedupe))
    if other then
      local state = redis.call('HGET', job_key(other), 'state')
      if state == 'waiting' or state == 'delayed' or state == 'active' then existing = other end
    end
  end
  if not existing and exists[id] then existing = id end
  if existing then
    out[#out + 1] = {0, existing}
  else
    exists[id] = true
    local jk = job_key(id)
    redis.call('HSET', jk, 'id', id, 'payload', payload, 'priority', priority, 'attempts', 0,
      'max_attempts', v[5], 'attempts_base', 0, 'created_at', now, 'stalls', 0)
    if timeout ~= '' then redis.call('HSET', jk, 'timeout_ms', timeout) end
    if group ~= '' then redis.call('HSET', jk, 'group', group) end
    if dedupe ~= '' then
      redis.call('HSET', jk, 'dedupe_key', dedupe)
      redis.call('SET', dedupe_key(dedupe), id)
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
