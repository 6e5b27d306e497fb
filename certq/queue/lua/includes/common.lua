--[[
  Helpers shared by every script. `K` (the declared KEYS by name) is defined by scripts.py above
  this text; ARGV[1] is always the queue's key base `<prefix>:<queue>:`, from which the per-job
  keys (job:<id> HASH, lock:<id> STRING) are built, so they share the queue's Cluster slot.

  Cluster: Redis checks only the declared KEYS before it runs a script. While the queue's slot is being
  migrated, a computed key may already be on the other node; reaching it aborts the script and keeps the
  writes made before. So every script reads (or `touch`es) each key it will write before its first write:
  an abort then changes nothing. Callers also declare the per-job keys they know, so Redis refuses the
  call up front (ASK/TRYAGAIN) and the Cluster client retries it.
]]
local base = ARGV[1]
local maxlen = tonumber(ARGV[2])

local function job_key(id) return base .. 'job:' .. id end
local function lock_key(id) return base .. 'lock:' .. id end
local function dedupe_key(dedupe) return base .. 'dedupe:' .. dedupe end

local function touch(key) redis.call('EXISTS', key) end

-- One call for many keys (`command` is EXISTS, MGET or DEL); returns the replies in order.
local function each_chunk(command, keys)
  local out = {}
  for i = 1, #keys, 1000 do
    local reply = redis.call(command, unpack(keys, i, math.min(i + 999, #keys)))
    if type(reply) == 'table' then
      for _, value in ipairs(reply) do out[#out + 1] = value end
    end
  end
  return out
end

local function emit(event, id, ...)
  if maxlen > 0 then
    redis.call('XADD', K.events, 'MAXLEN', '~', maxlen, '*', 'event', event, 'jobId', id, ...)
  end
end

local function wait_key(priority)
  if priority == 'high' then return K.wait_high elseif priority == 'low' then return K.wait_low end
  return K.wait
end

local function clear_dedupe(jk, id)
  local dedupe = redis.call('HGET', jk, 'dedupe_key')
  if dedupe then
    local dk = dedupe_key(dedupe)
    if redis.call('GET', dk) == id then redis.call('DEL', dk) end
  end
end

-- Before a to_failed (which clears the dedupe pointer); `dedupe` is the job's dedupe_key field or nil.
local function touch_dedupe(dedupe)
  if dedupe then touch(dedupe_key(dedupe)) end
end

-- entry is a JSON object built by the caller; Lua only splices it into the stored array.
local function append_error(jk, entry)
  local errors = redis.call('HGET', jk, 'errors')
  if not errors or errors == '' or errors == '[]' then
    errors = '[' .. entry .. ']'
  else
    errors = string.sub(errors, 1, -2) .. ',' .. entry .. ']'
  end
  redis.call('HSET', jk, 'errors', errors)
end

-- The dead-letter move. The caller has already taken the id out of its previous structure and touched
-- the job's dedupe key (touch_dedupe).
local function to_failed(jk, id, now, reason, category)
  redis.call('LPUSH', K.failed, id)
  redis.call('HSET', jk, 'state', 'failed', 'token', '', 'finished_at', now, 'last_error', reason, 'category', category)
  redis.call('HDEL', jk, 'due_at')
  clear_dedupe(jk, id)
  emit('failed', id, 'reason', reason)
end

-- Values packed by the caller into one ARGV, separated by NUL (JSON text never holds a raw NUL and ids are
-- checked for it), which saves the client encoding many small arguments.
local function unpack_nul(text)
  local out, start = {}, 1
  while true do
    local i = string.find(text, '\0', start, true)
    if not i then
      out[#out + 1] = string.sub(text, start)
      return out
    end
    out[#out + 1] = string.sub(text, start, i - 1)
    start = i + 1
  end
end

local function push_chunked(command, key, items)
  for i = 1, #items, 1000 do
    redis.call(command, key, unpack(items, i, math.min(i + 999, #items)))
  end
end
