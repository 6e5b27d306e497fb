--[[
  start_job: give a popped job its lease, or divert it. Needs K.active, K.delayed, K.failed.
  Rate limits come as ARGV text "group=tokens/period_ms;..." ("*" = any other group); a job over its
  group's limit goes to delayed until its reserved token is due, without counting an attempt.
  Returns 'ok' and the CLAIM_FIELDS values (attempts already counted), or 'corrupt' | 'cancelled' | 'limited'.
]]
local CLAIM_FIELDS = {'state', 'payload', 'cancel', 'group', 'rl_until', 'attempts', 'max_attempts', 'attempts_base',
  'priority', 'timeout_ms', 'created_at', 'stalls', 'dedupe_key', 'progress'}

local function limit_for(spec, group)
  local any_count, any_period
  for g, c, p in string.gmatch(spec, '([^;=]+)=(%d+)/(%d+)') do
    if g == group then return tonumber(c), tonumber(p) end
    if g == '*' then any_count, any_period = tonumber(c), tonumber(p) end
  end
  return any_count, any_period
end

-- Token bucket with reservations: tokens may go negative; -tokens jobs are queued behind the bucket.
local function wait_for_token(spec, group, now, reserved_until)
  if reserved_until and tonumber(reserved_until) <= now then return 0 end
  local count, period = limit_for(spec, group)
  if not count then return 0 end
  local lk = base .. 'limiter:' .. group
  local bucket = redis.call('HMGET', lk, 'tokens', 'ts')
  local tokens = tonumber(bucket[1]) or count
  local ts = tonumber(bucket[2]) or now
  if now > ts then
    tokens = math.min(count, tokens + (now - ts) * count / period)
    ts = now
  end
  tokens = tokens - 1
  redis.call('HSET', lk, 'tokens', tostring(tokens), 'ts', string.format('%d', ts))
  local wait = 0
  if tokens < 0 then wait = math.ceil(-tokens * period / count) end
  redis.call('PEXPIRE', lk, period * 2 + wait)
  return wait
end

local function start_job(id, in_active, now, lease_ms, token, consumer, limits)
  local jk = job_key(id)
  local f = redis.call('HMGET', jk, unpack(CLAIM_FIELDS))
  local diverted
  if not f[1] or not f[2] then
    redis.call('HSET', jk, 'id', id)
    redis.call('HSETNX', jk, 'payload', '{}')
    redis.call('HSETNX', jk, 'created_at', now)
    diverted = 'corrupt'
  elseif f[3] == '1' then
    diverted = 'cancelled'
  elseif f[4] and limits ~= '' then
    local wait = wait_for_token(limits, f[4], tonumber(now), f[5])
    if wait > 0 then diverted = 'limited' ; f[5] = string.format('%d', tonumber(now) + wait) end
  end
  if diverted then
    if in_active then redis.call('LREM', K.active, 1, id) end
    if diverted == 'corrupt' then
      to_failed(jk, id, now, 'corrupt job: missing ' .. (f[1] and 'payload' or 'state'), 'CORRUPT_JOB')
    elseif diverted == 'cancelled' then
      to_failed(jk, id, now, 'cancelled', 'CANCELLED')
    else
      redis.call('ZADD', K.delayed, f[5], id)
      redis.call('HSET', jk, 'state', 'delayed', 'due_at', f[5], 'rl_until', f[5])
      emit('rate-limited', id, 'dueAt', f[5])
    end
    return diverted, nil
  end
  if not in_active then redis.call('LPUSH', K.active, id) end
  redis.call('SET', lock_key(id), token, 'PX', lease_ms)
  local attempts = (tonumber(f[6]) or 0) + 1
  redis.call('HSET', jk, 'attempts', attempts, 'state', 'active', 'processed_at', now, 'consumer', consumer,
    'token', token)
  if f[5] then redis.call('HDEL', jk, 'rl_until') end
  emit('active', id, 'attempt', attempts)
  f[6] = attempts
  return 'ok', f
end

-- What a consumer needs to run the job, positionally (nil as false so the array keeps its length).
local function claimed_reply(id, token, f)
  return {id, token, f[2], f[6], f[7] or false, f[8] or false, f[9] or false, f[4] or false, f[10] or false,
    f[11] or false, f[12] or false, f[13] or false, f[14] or false}
end
