--[[
  Helpers shared by every script. `K` (the declared KEYS by name) is defined by scripts.py above
  this text; ARGV[1] is always the queue's key base `<prefix>:<queue>:`, from which the per-job
  keys (job:<id> HASH, lock:<id> STRING) are built, so they share the queue's Cluster slot.
]]
local base = ARGV[1]
local maxlen = tonumber(ARGV[2])

local function job_key(id) return base .. 'job:' .. id end
local function lock_key(id) return base .. 'lock:' .. id end

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
    local dk = base .. 'dedupe:' .. dedupe
    if redis.call('GET', dk) == id then redis.call('DEL', dk) end
  end
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

-- The dead-letter move. The caller has already taken the id out of its previous structure.
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
