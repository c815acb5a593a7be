-- Hands out up to ARGV[5] ready tasks, highest priority first, oldest entry first within
-- a priority. ARGV[4] consumer (worker id), ARGV[6] token, ARGV[7] lease expiry,
-- ARGV[8] tool count (-1: any tool), then the tool names.
-- Returns {next_due, task fields...}: next_due ('' if none, and when all asked for were
-- leased) is when a task may next be ready; each task is the flat HGETALL of its record.
local consumer, limit, token, lexp = ARGV[4], tonumber(ARGV[5]), ARGV[6], ARGV[7]
local ntools = tonumber(ARGV[8])
local wanted = nil
if ntools >= 0 then
  wanted = {}
  for i = 1, ntools do wanted[ARGV[8 + i]] = true end
end

promote()
reclaim()

-- Ready levels of the wanted tools, grouped by priority.
local by_prio = {}
local prios = {}
for _, level in ipairs(redis.call('SMEMBERS', ACTIVE)) do
  local sep = string.find(level, ':', 1, true)
  local prio, tool = tonumber(string.sub(level, 1, sep - 1)), string.sub(level, sep + 1)
  if not wanted or wanted[tool] then
    if not by_prio[prio] then by_prio[prio] = {}; prios[#prios + 1] = prio end
    table.insert(by_prio[prio], level)
  end
end
table.sort(prios, function(a, b) return a > b end)

local function id_less(a, b)
  local am, as = string.match(a, '(%d+)-(%d+)')
  local bm, bs = string.match(b, '(%d+)-(%d+)')
  am, bm = tonumber(am), tonumber(bm)
  if am ~= bm then return am < bm end
  return tonumber(as) < tonumber(bs)
end

local function last_delivered(s)
  for _, g in ipairs(redis.call('XINFO', 'GROUPS', s)) do
    local fields = {}
    for i = 1, #g, 2 do fields[g[i]] = g[i + 1] end
    if fields['name'] == GROUP then return fields['last-delivered-id'] end
  end
  return '0-0'
end

-- How many entries to take from each stream of one level: the oldest undelivered
-- entries across the level's streams, so no tool starves another of equal priority.
local function plan(levels, want)
  if #levels == 1 then return {[levels[1]] = want} end
  local heads = {}
  for _, level in ipairs(levels) do
    local s = stream_key(level)
    local after = '(' .. last_delivered(s)
    for _, e in ipairs(redis.call('XRANGE', s, after, '+', 'COUNT', want)) do
      heads[#heads + 1] = {e[1], level}
    end
  end
  table.sort(heads, function(x, y) return id_less(x[1], y[1]) end)
  local take = {}
  for i = 1, math.min(want, #heads) do
    take[heads[i][2]] = (take[heads[i][2]] or 0) + 1
  end
  return take
end

-- The lease entries and counters of started tasks, written in bulk at the end.
local leased = {}
local lease_entries = {}
local taken = {}

local function start(t)
  set_state(t, 'RUNNING', 'attempt', t.attempt + 1, 'token', token, 'lexp', lexp,
    'worker', consumer, 'started', NOW_S)
  lease_entries[#lease_entries + 1] = lexp
  lease_entries[#lease_entries + 1] = t.id
  taken[t.prio] = (taken[t.prio] or 0) + 1
end

local function record_starts()
  chunked(lease_entries, 'ZADD', LEASES)
  for prio, count in pairs(taken) do
    redis.call('HINCRBY', COUNTS, 'r:' .. prio, -count)
    redis.call('HINCRBY', COUNTS, 'queued', -count)
  end
end
local function take_from(level, count)
  local s = stream_key(level)
  local got = redis.call('XREADGROUP', 'GROUP', GROUP, consumer, 'COUNT', count,
    'STREAMS', s, '>')
  local entries = got and got[1] and got[1][2] or {}
  for _, e in ipairs(entries) do
    local t = load(e[2][2])
    if t and t.state == 'QUEUED' and t.sid == e[1] then
      start(t)
      leased[#leased + 1] = redis.call('HGETALL', t.key)
    else
      -- An entry whose task moved on (cancelled, expired): nothing to run.
      redis.call('XACK', s, GROUP, e[1])
      redis.call('XDEL', s, e[1])
    end
  end
  if redis.call('XLEN', s) == 0 then redis.call('SREM', ACTIVE, level) end
end

for _, prio in ipairs(prios) do
  local want = limit - #leased
  if want <= 0 then break end
  for level, count in pairs(plan(by_prio[prio], want)) do take_from(level, count) end
  -- Levels with nothing left to hand out are dropped from the active set.
  for _, level in ipairs(by_prio[prio]) do
    if redis.call('XLEN', stream_key(level)) == 0 then redis.call('SREM', ACTIVE, level) end
  end
end

record_starts()
notify()
local due = ''
if #leased < limit then due = next_due() end
local out = {due}
for _, fields in ipairs(leased) do out[#out + 1] = fields end
return out
