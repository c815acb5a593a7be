-- Stores a batch of tasks atomically. ARGV[3] atomic (1/0), ARGV[4] max queued (0: no
-- bound), ARGV[5] count, then FIELDS values per task (see redis_codec.submit_args).
-- Returns {'OK', outcome...} with outcome 'n' (new), 'e:<id>' (existing) or 'c'
-- (idempotency key reused with other args); {'CONFLICT', i}; or {'FULL', queued}.
local FIELDS = 13
local atomic = ARGV[3] == '1'
local max_queued = tonumber(ARGV[4])
local n = tonumber(ARGV[5])

local out = {}
local fresh = {}
local seen = {}
for i = 1, n do
  local o = 5 + (i - 1) * FIELDS
  local id, ahash, ikk = ARGV[o + 1], ARGV[o + 5], ARGV[o + 8]
  local prior = nil
  if redis.call('EXISTS', task_key(id)) == 1 then
    -- The same task sent again (a retried batch): acknowledge it once more.
    prior = {id, ahash}
  elseif ikk ~= '' then
    prior = seen[ikk]
    if not prior then
      local v = redis.call('GET', ikk)
      if v then
        local sp = string.find(v, ' ', 1, true)
        prior = {string.sub(v, 1, sp - 1), string.sub(v, sp + 1)}
      end
    end
  end
  if not prior then
    if ikk ~= '' then seen[ikk] = {id, ahash} end
    out[i] = 'n'
    fresh[#fresh + 1] = o
  elseif prior[2] == ahash then
    out[i] = 'e:' .. prior[1]
  elseif atomic then
    return {'CONFLICT', i}
  else
    out[i] = 'c'
  end
end

if max_queued > 0 and #fresh > 0 then
  local queued = tonumber(redis.call('HGET', COUNTS, 'queued') or '0')
  if queued + #fresh > max_queued then return {'FULL', queued} end
end

local index = {}
local function add_index(key, score, id)
  local list = index[key]
  if not list then list = {}; index[key] = list end
  list[#list + 1] = score
  list[#list + 1] = id
end

local streams = {}
local ready = {}
for _, o in ipairs(fresh) do
  local id, principal, tool, created = ARGV[o + 1], ARGV[o + 2], ARGV[o + 3], ARGV[o + 12]
  local prio, nb, ikk = ARGV[o + 9], ARGV[o + 13], ARGV[o + 8]
  local key = task_key(id)
  -- The stream entry first, so the record is written by one HSET with its entry id.
  local sid = false
  if tonumber(nb) > NOW then
    redis.call('ZADD', DELAYED, nb, id)
  else
    local level = prio .. ':' .. tool
    local s = streams[level]
    if not s then s = open_level(level); streams[level] = s end
    sid = redis.call('XADD', s, '*', 'id', id)
    ready[prio] = (ready[prio] or 0) + 1
  end
  local record = {key, 'id', id, 'principal', principal, 'tool', tool,
    'args', ARGV[o + 4], 'ahash', ARGV[o + 5], 'se', ARGV[o + 6], 'ikey', ARGV[o + 7],
    'ikk', ikk, 'prio', prio, 'max', ARGV[o + 10], 'idem', ARGV[o + 11],
    'created', created, 'nb', nb, 'state', 'QUEUED', 'attempt', 0}
  if sid then record[#record + 1] = 'sid'; record[#record + 1] = sid end
  redis.call('HSET', unpack(record))
  if ikk ~= '' then redis.call('SET', ikk, id .. ' ' .. ARGV[o + 5]) end
  add_index(IDX_ALL, created, id)
  add_index(idx_p(principal), created, id)
  add_index(idx_ps(principal, 'QUEUED'), created, id)
  add_index(idx_pt(principal, tool), created, id)
end

for key, list in pairs(index) do
  for start = 1, #list, 1000 do
    redis.call('ZADD', key, unpack(list, start, math.min(start + 999, #list)))
  end
end
for prio, count in pairs(ready) do redis.call('HINCRBY', COUNTS, 'r:' .. prio, count) end
if #fresh > 0 then
  redis.call('HINCRBY', COUNTS, 'queued', #fresh)
  -- Delayed tasks too: waiting workers re-read when the next one is due.
  ev.work = true
end
notify()
table.insert(out, 1, 'OK')
return out
