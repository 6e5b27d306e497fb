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
  ARGV[11] per completion, NUL-separated: job id, lease token, result JSON, dedupe key or ''

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

local statuses = {}
local v = {}
if acks > 0 then v = unpack_nul(ARGV[11]) end
for i = 0, acks - 1 do
  local id, token, result, dedupe = v[1 + i * 4], v[2 + i * 4], v[3 + i * 4], v[4 + i * 4]
  local lk = lock_key(id)
  if redis.call('GET', lk) == token then
    redis.call('LREM', K.active, 1, id)
    redis.call('DEL', lk)
    redis.call('LPUSH', K.completed, id)
    redis.call('HSET', job_key(id), 'state', 'completed', 'result', result, 'finished_at', now, 'token', '')
    if dedupe ~= '' then
      local dk = base .. 'dedupe:' .. dedupe
      if redis.call('GET', dk) == id then redis.call('DEL', dk) end
    end
    emit('completed', id)
    statuses[#statuses + 1] = 1
  else
    statuses[#statuses + 1] = 0
  end
end

if keep >= 0 and acks > 0 then
  local excess = redis.call('LLEN', K.completed) - keep
  for _ = 1, math.min(excess, acks + 10) do
    local old = redis.call('RPOP', K.completed)
    redis.call('DEL', job_key(old))
  end
end

local claimed = {}
local paused = 0
if want > 0 then
  if redis.call('HGET', K.meta, 'paused') == '1' then
    paused = 1
  else
    local lists = {K.wait_high, K.wait, K.wait_low}
    local level = 1
    local budget = want * 4 + 16
    while #claimed < want and level <= 3 and budget > 0 do
      local id = redis.call('RPOP', lists[level])
      if not id then
        level = level + 1
      else
        budget = budget - 1
        local token = token_prefix .. ':' .. (#claimed + 1)
        local status, f = start_job(id, false, now, lease_ms, token, consumer, limits)
        if status == 'ok' then claimed[#claimed + 1] = claimed_reply(id, token, f) end
      end
    end
  end
end
return {statuses, claimed, paused}
