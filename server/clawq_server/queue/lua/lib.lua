-- Shared helpers, prepended to every queue script. KEYS[1] is the queue's hash-tagged
-- base; every other key is derived from it here (mirror of queue/keys.py), so all keys
-- of one queue sit in one Redis Cluster slot.
-- ARGV[1] is the caller's clock (epoch seconds), ARGV[2] the retention of finished tasks,
-- ARGV[3] '1' when finished task ids go to the archive stream; a script's own arguments
-- start at ARGV[4].
--
-- A task record is a hash: 'r' the immutable record the server encoded (only Python
-- reads it), 'k' the immutable fields the scripts need (see KEY_FIELDS), then what the
-- scripts change: 'state', 'attempt' (absent: 0), 'sid' (its ready stream entry),
-- 'ikk' its idempotency key's name, 'nb' not_before once changed after submit,
-- 'cancel', the lease ('token', 'lexp', 'worker', 'started'), 'finished', the result
-- ('output', 'stderr', 'meta') and the error ('ecode', 'ereason', 'emsg'). READ_FIELDS,
-- the fields a reader's Task is built from, is defined above this file by redis_scripts.py.
local B = KEYS[1]
local NOW_S = ARGV[1]
local NOW = tonumber(NOW_S)
local RETENTION = tonumber(ARGV[2])
local ARCHIVING = ARGV[3] == '1'
local GROUP = 'workers'
local DELAYED = B .. ':delayed'
local LEASES = B .. ':leases'
local DEAD = B .. ':dead'
local COUNTS = B .. ':counts'
local ACTIVE = B .. ':active'
local LEVELS = B .. ':levels'
local EVENTS = B .. ':events'
local DONE = B .. ':done'
local ARCHIVE = B .. ':archive'
local IDX_ALL = B .. ':idx:all'
-- Members per variadic call: well under Lua's C stack limit for unpack().
local CHUNK = 4000
local TASK_FIELDS = {'state', 'k', 'sid', 'attempt', 'cancel', 'ikk', 'token'}
-- 'k' is "<created>\31<max attempts>\31<redo>\31<priority>:<tool>\31<principal>", redo
-- '1' when a lost lease may run the task again; one field instead of five keeps the
-- per-task HSET of a batch submit short. The principal is last, so it may hold anything.
local KEY_FIELDS = '^([^\31]*)\31([^\31]*)\31([^\31]*)\31([^\31]*)\31(.*)$'

local function task_key(id) return B .. ':task:' .. id end
local function pkey(p) return #p .. ':' .. p end
local function idx_p(p) return B .. ':idx:p:' .. pkey(p) end
local function idx_ps(p, s) return B .. ':idx:ps:' .. pkey(p) .. ':' .. s end
local function idx_pt(p, t) return B .. ':idx:pt:' .. pkey(p) .. ':' .. t end
local function idem_key(p, k) return B .. ':idem:' .. pkey(p) .. ':' .. k end
local function stream_key(level) return B .. ':ready:' .. level end
local function fmt(seconds) return string.format('%.6f', seconds) end
local function level_prio(level) return string.match(level, '^(-?%d+):') end
local function level_tool(level) return string.sub(level, string.find(level, ':', 1, true) + 1) end

-- Runs a variadic command on key (and one more fixed argument, if given) over a long
-- list of members, in chunks.
local function chunked(list, command, key, extra)
  for start = 1, #list, CHUNK do
    local stop = math.min(start + CHUNK - 1, #list)
    if extra then
      redis.call(command, key, extra, unpack(list, start, stop))
    else
      redis.call(command, key, unpack(list, start, stop))
    end
  end
end

-- Transitions collected by a script and published once at its end.
local ev = {work = false, done = {}}

local function load(id)
  local v = redis.call('HMGET', task_key(id), unpack(TASK_FIELDS))
  if not v[1] then return nil end
  local created, max, redo, level, principal = string.match(v[2], KEY_FIELDS)
  local t = {id = id, key = task_key(id), state = v[1], principal = principal,
    created = created, level = level, sid = v[3], attempt = tonumber(v[4] or '0'),
    max = tonumber(max), redo = redo == '1', cancel = v[5], ikk = v[6], token = v[7]}
  t.prio = level_prio(level)
  return t
end

-- State changes move a task between its principal's state indexes. The moves are netted
-- per task (first state to last) and written in bulk when the script ends (notify), so a
-- task that moves twice in one script, or a thousand tasks that move once, cost a few
-- calls. Further field/value pairs are written with the state.
local moved, moved_ids = {}, {}
local function set_state(t, new, ...)
  local m = moved[t.id]
  if not m then
    m = {principal = t.principal, created = t.created, from = t.state}
    moved[t.id] = m
    moved_ids[#moved_ids + 1] = t.id
  end
  m.to = new
  redis.call('HSET', t.key, 'state', new, ...)
  t.state = new
end

local function write_moves()
  local out, into = {}, {}
  for _, id in ipairs(moved_ids) do
    local m = moved[id]
    if m.from ~= m.to then
      local key = idx_ps(m.principal, m.from)
      out[key] = out[key] or {}
      table.insert(out[key], id)
      key = idx_ps(m.principal, m.to)
      into[key] = into[key] or {}
      table.insert(into[key], m.created)
      table.insert(into[key], id)
    end
  end
  for key, ids in pairs(out) do chunked(ids, 'ZREM', key) end
  for key, pairs_ in pairs(into) do chunked(pairs_, 'ZADD', key) end
end

-- Stream entries of tasks that left their stream, acknowledged and deleted in bulk at the end.
local dropped = {}
local function write_drops()
  for s, sids in pairs(dropped) do
    chunked(sids, 'XACK', s, GROUP)
    chunked(sids, 'XDEL', s)
  end
end

-- The ready stream of a level, created with its consumer group on first use.
local function open_level(level)
  local s = stream_key(level)
  if redis.call('SADD', ACTIVE, level) == 1 and redis.call('EXISTS', s) == 0 then
    redis.call('XGROUP', 'CREATE', s, GROUP, '0', 'MKSTREAM')
    redis.call('SADD', LEVELS, level)
  end
  return s
end

local function to_stream(t)
  local sid = redis.call('XADD', open_level(t.level), '*', 'id', t.id)
  redis.call('HSET', t.key, 'sid', sid)
  redis.call('HINCRBY', COUNTS, 'r:' .. t.prio, 1)
  ev.work = true
end

-- Drops the task's stream entry (acknowledged if it was delivered) at the script's end;
-- the caller deletes the record's 'sid' field.
local function drop_entry(t)
  if t.sid then
    local s = stream_key(t.level)
    dropped[s] = dropped[s] or {}
    table.insert(dropped[s], t.sid)
    t.sid = nil
  end
end

local function to_queue(t, not_before)
  set_state(t, 'QUEUED')
  redis.call('HINCRBY', COUNTS, 'queued', 1)
  if not_before > NOW then
    redis.call('ZADD', DELAYED, not_before, t.id)
    ev.work = true  -- as for a delayed submit: waiting workers re-read when it is due
  else
    to_stream(t)
  end
end

-- Ends a task's lease; further field names are deleted from the record with the lease's.
local function end_lease(t, ...)
  drop_entry(t)
  redis.call('ZREM', LEASES, t.id)
  redis.call('HDEL', t.key, 'sid', 'token', 'lexp', 'worker', ...)
end

-- Further field/value pairs are written with the state.
local function terminal(t, state, ...)
  set_state(t, state, 'finished', NOW_S, ...)
  redis.call('EXPIRE', t.key, RETENTION)
  if t.ikk then redis.call('EXPIRE', t.ikk, RETENTION) end
  if state == 'DEAD' then redis.call('ZADD', DEAD, NOW, t.id) end
  ev.done[#ev.done + 1] = t.id
end

local function set_error(t, code, reason, message)
  if code and code ~= '' then
    redis.call('HSET', t.key, 'ecode', code, 'ereason', reason, 'emsg', message)
  else
    redis.call('HDEL', t.key, 'ecode', 'ereason', 'emsg')
  end
end

-- A finished task as its done message carries it: the id, then the READ_FIELDS values
-- (get.lua's reply for it). A record over INLINE_BYTES, or past the message's budget of
-- MESSAGE_BYTES, is left out (a waiter then reads it): every server receives the message.
-- Lengths are 4-byte big-endian, -1 for a missing value or record.
local INLINE_BYTES = 8192
local MESSAGE_BYTES = 65536
local done_budget = MESSAGE_BYTES
local function done_entry(id)
  local key = task_key(id)
  local head = struct.pack('>i4', #id) .. id
  local size = redis.call('HSTRLEN', key, 'output') + redis.call('HSTRLEN', key, 'stderr')
  if size > INLINE_BYTES or size > done_budget then
    return head .. struct.pack('>i4', -1)
  end
  local values = redis.call('HMGET', key, unpack(READ_FIELDS))
  local record = {}
  for i = 1, #READ_FIELDS do
    local v = values[i]
    if v then
      record[#record + 1] = struct.pack('>i4', #v) .. v
    else
      record[#record + 1] = struct.pack('>i4', -1)
    end
  end
  record = table.concat(record)
  if #record > INLINE_BYTES or #record > done_budget then
    return head .. struct.pack('>i4', -1)
  end
  done_budget = done_budget - #record
  return head .. struct.pack('>i4', #record) .. record
end

-- Writes what was collected in bulk, then publishes the transitions; finished ids also go
-- to the archive stream. Every script that changes tasks ends with it.
local function notify()
  write_drops()
  write_moves()
  if ev.work then redis.call('PUBLISH', EVENTS, 'w') end
  if #ev.done > 0 then
    local entries = {}
    for i, id in ipairs(ev.done) do entries[i] = done_entry(id) end
    redis.call('PUBLISH', DONE, 'T' .. table.concat(entries))
    if ARCHIVING then redis.call('XADD', ARCHIVE, '*', 'ids', table.concat(ev.done, ' ')) end
  end
end

-- Moves delayed tasks whose time has come to their ready stream.
local function promote()
  local ids = redis.call('ZRANGEBYSCORE', DELAYED, '-inf', NOW_S, 'LIMIT', 0, 1000)
  for _, id in ipairs(ids) do
    redis.call('ZREM', DELAYED, id)
    local t = load(id)
    if t and t.state == 'QUEUED' then to_stream(t) end
  end
end

-- Settles expired leases: redeliver what is safe to run again, fail the rest.
local function reclaim()
  local ids = redis.call('ZRANGEBYSCORE', LEASES, '-inf', '(' .. NOW_S, 'LIMIT', 0, 1000)
  for _, id in ipairs(ids) do
    local t = load(id)
    redis.call('ZREM', LEASES, id)
    if t and t.state == 'RUNNING' then
      end_lease(t)
      set_error(t, 'ABORTED', 'WORKER_LOST', 'the worker running this task stopped renewing its lease')
      if t.cancel == '1' then
        terminal(t, 'CANCELLED')
      elseif t.redo then
        if t.attempt >= t.max then terminal(t, 'DEAD') else to_queue(t, NOW) end
      else
        terminal(t, 'FAILED')
      end
    end
  end
end

-- The earliest time a delayed task becomes due or a lease expires ('' if none).
local function next_due()
  local a = redis.call('ZRANGE', DELAYED, 0, 0, 'WITHSCORES')
  local b = redis.call('ZRANGE', LEASES, 0, 0, 'WITHSCORES')
  local due = nil
  if a[2] then due = tonumber(a[2]) end
  if b[2] and (not due or tonumber(b[2]) < due) then due = tonumber(b[2]) end
  if due then return fmt(due) end
  return ''
end
