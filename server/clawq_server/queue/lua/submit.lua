-- Stores a batch of tasks atomically. ARGV[4] atomic (1/0), ARGV[5] max queued (0: no
-- bound), ARGV[6] a JSON array of FIELDS values per task (see redis_codec.submit_batch),
-- ARGV[7] every task's record, concatenated (each one's length is among its FIELDS).
-- Returns {'OK', i, outcome, ...} listing only the tasks that were not new, outcome
-- 'e:<id>' (existing) or 'c' (idempotency key reused with other args); {'CONFLICT', i};
-- or {'FULL', queued}.
local FIELDS = 9
local atomic = ARGV[4] == '1'
local max_queued = tonumber(ARGV[5])
local meta = cjson.decode(ARGV[6])
local records = ARGV[7]
local n = #meta / FIELDS

-- Pass 1: which tasks are new, and the outcome of the others. Existing records and
-- idempotency keys are looked up by one variadic call each, not one call per task.
local function lookup(command, names)
  local found = {}
  for start = 1, #names, CHUNK do
    local part = redis.call(command, unpack(names, start, math.min(start + CHUNK - 1, #names)))
    if type(part) == 'number' then return part end
    for _, v in ipairs(part) do found[#found + 1] = v end
  end
  return found
end

local names, keyed = {}, {}
for i = 1, n do
  local o = (i - 1) * FIELDS
  names[i] = task_key(meta[o + 1])
  if meta[o + 6] ~= '' then keyed[#keyed + 1] = i end
end
-- Almost always none exists: then no record needs a closer look.
local any_exists = 0
for start = 1, n, CHUNK do
  any_exists = any_exists + redis.call('EXISTS', unpack(names, start, math.min(start + CHUNK - 1, n)))
end
local ikks, prior_of = {}, {}
for j, i in ipairs(keyed) do
  local o = (i - 1) * FIELDS
  ikks[j] = idem_key(meta[o + 2], meta[o + 6])
end
if #ikks > 0 then
  for j, v in ipairs(lookup('MGET', ikks)) do
    if v then
      local sp = string.find(v, ' ', 1, true)
      prior_of[keyed[j]] = {string.sub(v, 1, sp - 1), string.sub(v, sp + 1)}
    end
  end
end

local out = {'OK'}
local fresh = {}
local seen = {}
local next_keyed = 1
for i = 1, n do
  local o = (i - 1) * FIELDS
  local id, ahash = meta[o + 1], meta[o + 7]
  local prior, ikk = nil, nil
  if keyed[next_keyed] == i then
    ikk = ikks[next_keyed]
    next_keyed = next_keyed + 1
  end
  if any_exists > 0 and redis.call('EXISTS', names[i]) == 1 then
    -- The same task sent again (a retried batch): acknowledge it once more.
    prior = {id, ahash}
  elseif ikk then
    prior = seen[ikk] or prior_of[i]
  end
  if not prior then
    if ikk then seen[ikk] = {id, ahash} end
    fresh[#fresh + 1] = i
  elseif prior[2] == ahash then
    out[#out + 1] = i
    out[#out + 1] = 'e:' .. prior[1]
  elseif atomic then
    return {'CONFLICT', i}
  else
    out[#out + 1] = i
    out[#out + 1] = 'c'
  end
end

if max_queued > 0 and #fresh > 0 then
  local queued = tonumber(redis.call('HGET', COUNTS, 'queued') or '0')
  if queued + #fresh > max_queued then return {'FULL', queued} end
end

-- Pass 2: the writes. Index members are collected and added by one ZADD per index.
local index = {}
local function add_index(key, score, id)
  local list = index[key]
  if not list then list = {}; index[key] = list end
  list[#list + 1] = score
  list[#list + 1] = id
end

local offsets = {}
local pos = 1
for i = 1, n do
  offsets[i] = pos
  pos = pos + meta[(i - 1) * FIELDS + 8]
end

local streams = {}
local ready = {}
local per_principal = {}
local tools = {}
for _, i in ipairs(fresh) do
  local o = (i - 1) * FIELDS
  local id, principal, level, created = meta[o + 1], meta[o + 2], meta[o + 3], meta[o + 4]
  local nb, ikey = meta[o + 5], meta[o + 6]
  local record = {names[i], 'r', string.sub(records, offsets[i], offsets[i] + meta[o + 8] - 1),
    'k', meta[o + 9], 'state', 'QUEUED'}
  -- The stream entry first, so the record is written by one HSET with its entry id.
  if tonumber(nb) > NOW then
    redis.call('ZADD', DELAYED, nb, id)
  else
    local s = streams[level]
    if not s then s = open_level(level); streams[level] = s end
    record[#record + 1] = 'sid'
    record[#record + 1] = redis.call('XADD', s, '*', 'id', id)
    ready[level] = (ready[level] or 0) + 1
  end
  if ikey ~= '' then
    local ikk = idem_key(principal, ikey)
    record[#record + 1] = 'ikk'
    record[#record + 1] = ikk
    redis.call('SET', ikk, id .. ' ' .. meta[o + 7])
  end
  redis.call('HSET', unpack(record))
  local keys = per_principal[principal]
  if not keys then
    keys = {idx_p(principal), idx_ps(principal, 'QUEUED')}
    per_principal[principal] = keys
  end
  local tool = tools[level]
  if not tool then tool = level_tool(level); tools[level] = tool end
  add_index(IDX_ALL, created, id)
  add_index(keys[1], created, id)
  add_index(keys[2], created, id)
  add_index(idx_pt(principal, tool), created, id)
end

for key, list in pairs(index) do chunked(list, 'ZADD', key) end
for level, count in pairs(ready) do
  redis.call('HINCRBY', COUNTS, 'r:' .. level_prio(level), count)
end
if #fresh > 0 then
  redis.call('HINCRBY', COUNTS, 'queued', #fresh)
  -- Delayed tasks too: waiting workers re-read when the next one is due.
  ev.work = true
end
notify()
return out
