-- Records the outcomes of leased tasks, each fenced by its token. ARGV[4] base delay,
-- ARGV[5] max delay, then ITEM values per task: id, token, retryable (1/0), jitter draw
-- in [0, 1), has result (1/0), output, stderr, result metadata JSON, error code, reason,
-- message ('' code: no error).
-- Returns per task its new state, or 'LOST' when its lease is not held.
local ITEM = 11
local base_delay, max_delay = tonumber(ARGV[4]), tonumber(ARGV[5])

local function complete_one(o)
  local t = load(ARGV[o + 1])
  if not t or t.state ~= 'RUNNING' or t.token ~= ARGV[o + 2] then return 'LOST' end
  local retryable = ARGV[o + 3] == '1'
  local failed = ARGV[o + 9] ~= ''
  -- The outcome's fields are written with the new state; the lease's and the stale ones
  -- go in one HDEL.
  local set = {}
  local stale = {}
  if ARGV[o + 5] == '1' then
    set = {'output', ARGV[o + 6], 'stderr', ARGV[o + 7], 'meta', ARGV[o + 8]}
  else
    stale = {'output', 'stderr', 'meta'}
  end
  if failed then
    for _, v in ipairs({'ecode', ARGV[o + 9], 'ereason', ARGV[o + 10], 'emsg', ARGV[o + 11]}) do
      set[#set + 1] = v
    end
  else
    for _, v in ipairs({'ecode', 'ereason', 'emsg'}) do stale[#stale + 1] = v end
  end
  end_lease(t, unpack(stale))
  if t.cancel == '1' then
    terminal(t, 'CANCELLED', unpack(set))
  elseif not failed then
    terminal(t, 'SUCCEEDED', unpack(set))
  elseif retryable and t.attempt < t.max then
    -- Same formula as queue/backoff.py: full jitter under base * 2^(attempt-1), capped.
    local ceiling = math.min(max_delay, base_delay * 2 ^ math.min(t.attempt - 1, 62))
    local not_before = NOW + ceiling * tonumber(ARGV[o + 4])
    redis.call('HSET', t.key, 'nb', fmt(not_before), unpack(set))
    to_queue(t, not_before)
  elseif retryable then
    terminal(t, 'DEAD', unpack(set))
  else
    terminal(t, 'FAILED', unpack(set))
  end
  return t.state
end

local out = {}
for o = 5, #ARGV - ITEM, ITEM do out[#out + 1] = complete_one(o) end
notify()
return out
