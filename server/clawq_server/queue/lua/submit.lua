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

-- Pass 2: the writes. Index members are collected as (created, id) pairs and added by
-- one ZADD per index: every task to the all-tasks index, a principal's tasks to its own
-- index and its QUEUED index (the same list), and per tool to its principal-tool index.
local all, n_all = {}, 0
local by_principal = {}
local by_tool = {}
local streams = {}
local ready = {}
local pos = 1
local offsets = {}
for i = 1, n do
  offsets[i] = pos
  pos = pos + meta[(i - 1) * FIELDS + 8]
end

-- The lists of the last (principal, level) seen: batches come in long runs of them.
local run_key, p_list, t_list = nil, nil, nil
local function lists_of(principal, level)
  local key = level .. ' ' .. principal
  if key == run_key then return end
  run_key = key
  p_list = by_principal[principal]
  if not p_list then p_list = {n = 0}; by_principal[principal] = p_list end
  local tkey = idx_pt(principal, level_tool(level))
  t_list = by_tool[tkey]
  if not t_list then t_list = {n = 0}; by_tool[tkey] = t_list end
end

for _, i in ipairs(fresh) do
  local o = (i - 1) * FIELDS
  local id, principal, level, created = meta[o + 1], meta[o + 2], meta[o + 3], meta[o + 4]
  local nb, ikey, start = meta[o + 5], meta[o + 6], offsets[i]
  if nb == '' then nb = created end
  local record = {names[i], 'r', string.sub(records, start, start + meta[o + 8] - 1),
    'k', meta[o + 9], 'state', 'QUEUED'}
  -- The stream entry first, so the record is written by one HSET with its entry id.
  if tonumber(nb) > NOW then
    redis.call('ZADD', DELAYED, nb, id)
  else
    local s = streams[level]
    if not s then s = open_level(level); streams[level] = s end
    record[8] = 'sid'
    record[9] = redis.call('XADD', s, '*', 'id', id)
    ready[level] = (ready[level] or 0) + 1
  end
  if ikey ~= '' then
    local ikk = idem_key(principal, ikey)
    record[#record + 1] = 'ikk'
    record[#record + 1] = ikk
    redis.call('SET', ikk, id .. ' ' .. meta[o + 7])
  end
  redis.call('HSET', unpack(record))
  n_all = n_all + 2
  all[n_all - 1], all[n_all] = created, id
  lists_of(principal, level)
  local m = p_list.n + 2
  p_list[m - 1], p_list[m], p_list.n = created, id, m
  m = t_list.n + 2
  t_list[m - 1], t_list[m], t_list.n = created, id, m
end

chunked(all, 'ZADD', IDX_ALL)
for principal, list in pairs(by_principal) do
  chunked(list, 'ZADD', idx_p(principal))
  chunked(list, 'ZADD', idx_ps(principal, 'QUEUED'))
end
for key, list in pairs(by_tool) do chunked(list, 'ZADD', key) end
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
