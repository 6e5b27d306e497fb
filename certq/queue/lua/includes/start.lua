--[[
  Starting a popped job, in two steps so that every key is read before the first write (see common):
  plan_start reads the job (and its group's token bucket and dedupe key) and decides, adding the lock key
  to `touches` for 'ok'; the caller plans all its jobs, touches, pushes the 'ok' ids to active, then
  apply_start gives each its lease or diverts it, and flush_buckets writes the token buckets.
  Needs K.active, K.delayed, K.failed.
  Rate limits come as ARGV text "group=tokens/period_ms;..." ("*" = any other group); a job over its
  group's limit goes to delayed until its reserved token is due, without counting an attempt.
  A plan's status: 'ok' | 'corrupt' | 'cancelled' | 'limited'.
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
-- Buckets are read once per call into `buckets` (the read is the touch) and written by flush_buckets.
local function wait_for_token(spec, group, now, reserved_until, buckets)
  if reserved_until and tonumber(reserved_until) <= now then return 0 end
  local count, period = limit_for(spec, group)
  if not count then return 0 end
  local b = buckets.by_group[group]
  if not b then
    local key = base .. 'limiter:' .. group
    local bucket = redis.call('HMGET', key, 'tokens', 'ts')
    b = {key = key, tokens = tonumber(bucket[1]) or count, ts = tonumber(bucket[2]) or now}
    buckets.by_group[group] = b
    buckets.list[#buckets.list + 1] = b
  end
  if now > b.ts then
    b.tokens = math.min(count, b.tokens + (now - b.ts) * count / period)
    b.ts = now
  end
  b.tokens = b.tokens - 1
  local wait = 0
  if b.tokens < 0 then wait = math.ceil(-b.tokens * period / count) end
  b.ttl = period * 2 + wait
  return wait
end

local function new_buckets() return {by_group = {}, list = {}} end

local function flush_buckets(buckets)
  for _, b in ipairs(buckets.list) do
    redis.call('HSET', b.key, 'tokens', tostring(b.tokens), 'ts', string.format('%d', b.ts))
    redis.call('PEXPIRE', b.key, b.ttl)
  end
end

local function plan_start(id, now, limits, buckets, touches)
  local f = redis.call('HMGET', job_key(id), unpack(CLAIM_FIELDS))
  local status = 'ok'
  if not f[1] or not f[2] then
    status = 'corrupt'
  elseif f[3] == '1' then
    status = 'cancelled'
  elseif f[4] and limits ~= '' then
    local wait = wait_for_token(limits, f[4], tonumber(now), f[5], buckets)
    if wait > 0 then status = 'limited' ; f[5] = string.format('%d', tonumber(now) + wait) end
  end
  if status == 'ok' then
    touches[#touches + 1] = lock_key(id)
  elseif status ~= 'limited' then
    touch_dedupe(f[13])
  end
  return {id = id, f = f, status = status}
end

-- Returns the plan's status and, for 'ok', the CLAIM_FIELDS values (attempts already counted). The caller
-- has put an 'ok' id in active; `in_active`: a diverted id is in active too and leaves it.
local function apply_start(plan, in_active, now, lease_ms, token, consumer)
  local id, f, status = plan.id, plan.f, plan.status
  local jk = job_key(id)
  if status ~= 'ok' then
    if in_active then redis.call('LREM', K.active, 1, id) end
    if status == 'corrupt' then
      redis.call('HSET', jk, 'id', id)
      redis.call('HSETNX', jk, 'payload', '{}')
      redis.call('HSETNX', jk, 'created_at', now)
      to_failed(jk, id, now, 'corrupt job: missing ' .. (f[1] and 'payload' or 'state'), 'CORRUPT_JOB')
    elseif status == 'cancelled' then
      to_failed(jk, id, now, 'cancelled', 'CANCELLED')
    else
      redis.call('ZADD', K.delayed, f[5], id)
      redis.call('HSET', jk, 'state', 'delayed', 'due_at', f[5], 'rl_until', f[5])
      emit('rate-limited', id, 'dueAt', f[5])
    end
    return status, nil
  end
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
