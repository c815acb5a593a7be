-- One page of task ids, newest first, keyset-paged on (created, id). ARGV[4] '1' when
-- scoped to the principal in ARGV[5], ARGV[6] tool ('' any), ARGV[7] created_after
-- ('' none), ARGV[8] created_before ('' none), ARGV[9] cursor created ('' none),
-- ARGV[10] cursor id, ARGV[11] limit, ARGV[12] state count, then the states.
-- Returns {next created, next id, ids...}; next is '' at the end. Index entries of
-- records that retention expired are removed on the way.
local SCAN_CAP = 5000
local BATCH = 256
local scoped, principal, tool = ARGV[4] == '1', ARGV[5], ARGV[6]
local after, before = ARGV[7], tonumber(ARGV[8])
local cur_score, cur_id = tonumber(ARGV[9]), ARGV[10]
local limit = tonumber(ARGV[11])
local states = {}
local nstates = tonumber(ARGV[12])
for i = 1, nstates do states[ARGV[12 + i]] = true end

-- The narrowest index that holds every match; other filters are checked per task.
local idx = IDX_ALL
if scoped and tool ~= '' then
  idx = idx_pt(principal, tool)
elseif scoped and nstates == 1 then
  idx = idx_ps(principal, ARGV[13])
elseif scoped then
  idx = idx_p(principal)
end

local max = '+inf'
if cur_score then max = ARGV[9] elseif before then max = '(' .. ARGV[8] end
local min = '-inf'
if after ~= '' then min = after end

-- The tool and principal filters against a record's 'k' field.
local function matches(k)
  local _, _, _, level, owner = string.match(k, KEY_FIELDS)
  return (tool == '' or level_tool(level) == tool) and (not scoped or owner == principal)
end

local function wanted(id, score)
  if cur_score and (score > cur_score or (score == cur_score and id >= cur_id)) then
    return false
  end
  return not before or score < before
end

local found, scanned, offset = {}, 0, 0
local last_score, last_id = nil, nil
while #found <= limit and scanned < SCAN_CAP do
  local batch = redis.call('ZREVRANGEBYSCORE', idx, max, min, 'WITHSCORES', 'LIMIT', offset, BATCH)
  if #batch == 0 then break end
  local removed = 0
  for i = 1, #batch, 2 do
    local id, score = batch[i], tonumber(batch[i + 1])
    scanned = scanned + 1
    if #found <= limit and wanted(id, score) then
      local v = redis.call('HMGET', task_key(id), 'state', 'k')
      if not v[1] then
        redis.call('ZREM', idx, id)
        removed = removed + 1
      elseif (nstates == 0 or states[v[1]]) and matches(v[2]) then
        found[#found + 1] = {id, batch[i + 1]}
      end
      last_score, last_id = batch[i + 1], id
    end
  end
  offset = offset + #batch / 2 - removed
end

local out = {'', ''}
if #found > limit then
  out = {found[limit][2], found[limit][1]}
elseif scanned >= SCAN_CAP and last_id then
  -- A long run of non-matching tasks: hand back a short page and where to go on.
  out = {last_score, last_id}
end
for i = 1, math.min(limit, #found) do out[#out + 1] = found[i][1] end
return out
