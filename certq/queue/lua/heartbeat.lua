--[[
  Renew the caller's leases (PEXPIRE when the token still matches) and its entry in the worker registry.

  KEYS[1] workers    (ZSET)
  KEYS[2..] worker:<consumer id>, then per pair lock:<id>, job:<id> (declared for Cluster routing)
  ARGV[1] key base
  ARGV[2] events maxlen
  ARGV[3] now, epoch ms
  ARGV[4] lease ms
  ARGV[5] consumer id
  ARGV[6] consumer info (JSON text)
  ARGV[7] registry entry ttl ms
  ARGV[8..] per lease, 2 values: job id, lease token
  Returns one status per pair: 1 renewed, 2 renewed but cancel requested, 0 lease lost
]]
-- @include common
local now, lease_ms, consumer, ttl = ARGV[3], ARGV[4], ARGV[5], tonumber(ARGV[7])
local statuses, renew = {}, {}
for i = 8, #ARGV, 2 do
  local id, token = ARGV[i], ARGV[i + 1]
  local lk = lock_key(id)
  if redis.call('GET', lk) == token then
    renew[#renew + 1] = lk
    if redis.call('HGET', job_key(id), 'cancel') == '1' then
      statuses[#statuses + 1] = 2
    else
      statuses[#statuses + 1] = 1
    end
  else
    statuses[#statuses + 1] = 0
  end
end
local wk = base .. 'worker:' .. consumer
touch(wk)
for _, lk in ipairs(renew) do redis.call('PEXPIRE', lk, lease_ms) end
redis.call('ZADD', K.workers, now, consumer)
redis.call('SET', wk, ARGV[6], 'PX', ttl)
redis.call('ZREMRANGEBYSCORE', K.workers, '-inf', tonumber(now) - 10 * ttl)
return statuses
