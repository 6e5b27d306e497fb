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
  ARGV[10] number of completions, then (job id, lease token, result JSON) per completion
  Returns {ack statuses (1 done, 0 lease lost), claimed {id, token, HGETALL}..., paused (0|1)}
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
for i = 0, acks - 1 do
  local id, token, result = ARGV[11 + i * 3], ARGV[12 + i * 3], ARGV[13 + i * 3]
  local lk = lock_key(id)
  if redis.call('GET', lk) == token then
    local jk = job_key(id)
    redis.call('LREM', K.active, 1, id)
    redis.call('DEL', lk)
    redis.call('LPUSH', K.completed, id)
    redis.call('HSET', jk, 'state', 'completed', 'result', result, 'finished_at', now)
    redis.call('HDEL', jk, 'token')
    clear_dedupe(jk, id)
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
        if start_job(id, false, now, lease_ms, token, consumer, limits) == 'ok' then
          claimed[#claimed + 1] = {id, token, redis.call('HGETALL', job_key(id))}
        end
      end
    end
  end
end
return {statuses, claimed, paused}
