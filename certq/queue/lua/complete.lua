--[[
  Complete the jobs whose lease the caller holds, then claim up to N more (priority order, FIFO
  within a level). With no completions this is the non-blocking claim; with N = 0, a pure ack.

  KEYS[1] wait_high  (LIST)
  KEYS[2] wait       (LIST)
  KEYS[3] wait_low   (LIST)
  KEYS[4] active     (LIST)
  KEYS[5] completed  (LIST)
  KEYS[6] failed     (LIST)
  KEYS[7] delayed    (ZSET)
  KEYS[8] meta       (HASH)
  KEYS[9] events     (STREAM)
  KEYS[10..] per completion: job:<id>, lock:<id>, dedupe:<key> if any (declared for Cluster routing)
  ARGV[1] key base
  ARGV[2] events maxlen
  ARGV[3] now, epoch ms
  ARGV[4] lease ms
  ARGV[5] consumer id
  ARGV[6] token prefix (fresh per call; token = prefix .. ':' .. n)
  ARGV[7] jobs to claim
  ARGV[8] completed jobs to keep (-1 keeps all)
  ARGV[9] rate limits "group=tokens/period_ms;..."
  ARGV[10] number of completions
  ARGV[11] per completion, 4 NUL-separated values: job id, lease token, result JSON, dedupe key or ''

  Reads first, writes after (see common): the claimed ids are peeked (LRANGE) and planned before any pop.
  Returns {ack statuses (1 done, 0 lease lost), claimed jobs (claimed_reply)..., paused (0|1)}
  Events: completed, active, failed (corrupt/cancelled), rate-limited
]]
-- @include common
-- @include start
local now = ARGV[3]
local lease_ms = ARGV[4]
local consumer = ARGV[5]
local token_prefix = ARGV[6]
local want = tonumber(ARGV[7])
local keep = tonumber(ARGV[8])
local limits = ARGV[9]
local acks = tonumber(ARGV[10])

local statuses, done, touches = {}, {}, {}
if acks > 0 then
  local v = unpack_nul(ARGV[11])
  local locks = {}
  for i = 0, acks - 1 do locks[i + 1] = lock_key(v[1 + i * 4]) end
  local held, seen = each_chunk('MGET', locks), {}
  for i = 0, acks - 1 do
    local id, dedupe = v[1 + i * 4], v[4 + i * 4]
    if not seen[id] and held[i + 1] == v[2 + i * 4] then
      seen[id] = true
      local dk = false
      if dedupe ~= '' then
        dk = dedupe_key(dedupe)
        if redis.call('GET', dk) ~= id then dk = false end
      end
      done[#done + 1] = {id, v[3 + i * 4], dk}
      touches[#touches + 1] = job_key(id)
      statuses[i + 1] = 1
    else
      statuses[i + 1] = 0
    end
  end
end

-- The completed list is cut from the right after the pushes: old ids first, then the new ones in order.
local trimmed = {}
if keep >= 0 and acks > 0 then
  local before = redis.call('LLEN', K.completed)
  local cut = math.min(before + #done - keep, acks + 10)
  if cut > 0 then
    if before > 0 then trimmed = redis.call('LRANGE', K.completed, -math.min(cut, before), -1) end
    for i = 1, cut - #trimmed do trimmed[#trimmed + 1] = done[i][1] end
    for _, old in ipairs(trimmed) do touches[#touches + 1] = job_key(old) end
  end
end

local plans, taken_at = {}, {0, 0, 0}
local buckets = new_buckets()
local paused = 0
local lists = {K.wait_high, K.wait, K.wait_low}
if want > 0 then
  if redis.call('HGET', K.meta, 'paused') == '1' then
    paused = 1
  else
    local level, ok = 1, 0
    local budget = want * 4 + 16
    local chunk, at = {}, 0
    while ok < want and level <= 3 and budget > 0 do
      if at == 0 then
        local n, taken = math.min(want - ok, budget), taken_at[level]
        chunk = redis.call('LRANGE', lists[level], -(taken + n), -(taken + 1))
        at = #chunk
        if at == 0 then level = level + 1 end
      else
        local plan = plan_start(chunk[at], now, limits, buckets, touches)
        plans[#plans + 1] = plan
        at, budget = at - 1, budget - 1
        taken_at[level] = taken_at[level] + 1
        if plan.status == 'ok' then ok = ok + 1 end
      end
    end
  end
end

if #touches > 0 then each_chunk('EXISTS', touches) end
-- Every key this call writes has been read or touched: writes from here on.

if #done > 0 then
  local ids, locks = {}, {}
  for i, d in ipairs(done) do
    ids[i], locks[i] = d[1], lock_key(d[1])
    redis.call('LREM', K.active, 1, d[1])
    redis.call('HSET', job_key(d[1]), 'state', 'completed', 'result', d[2], 'finished_at', now, 'token', '')
    if d[3] then redis.call('DEL', d[3]) end
    emit('completed', d[1])
  end
  each_chunk('DEL', locks)
  push_chunked('LPUSH', K.completed, ids)
end

if #trimmed > 0 then
  redis.call('LTRIM', K.completed, 0, -(#trimmed + 1))
  local keys = {}
  for i, old in ipairs(trimmed) do keys[i] = job_key(old) end
  each_chunk('DEL', keys)
end

local claimed, starting = {}, {}
for level = 1, 3 do
  if taken_at[level] > 0 then redis.call('LTRIM', lists[level], 0, -(taken_at[level] + 1)) end
end
for _, plan in ipairs(plans) do
  if plan.status == 'ok' then starting[#starting + 1] = plan.id end
end
if #starting > 0 then push_chunked('LPUSH', K.active, starting) end
for _, plan in ipairs(plans) do
  local token = token_prefix .. ':' .. (#claimed + 1)
  local status, f = apply_start(plan, false, now, lease_ms, token, consumer)
  if status == 'ok' then claimed[#claimed + 1] = claimed_reply(plan.id, token, f) end
end
flush_buckets(buckets)
return {statuses, claimed, paused}
