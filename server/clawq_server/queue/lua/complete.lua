-- Records the outcome of a leased task, fenced by its token. ARGV[3] task id, ARGV[4]
-- token, ARGV[5] retryable (1/0), ARGV[6] jitter draw in [0, 1), ARGV[7] base delay,
-- ARGV[8] max delay, ARGV[9] has result (1/0), ARGV[10..12] output, stderr, result
-- metadata JSON, ARGV[13..15] error code, reason, message ('' code: no error).
-- Returns the new state, or 'LOST' when the lease is not held.
local t = load(ARGV[3])
if not t or t.state ~= 'RUNNING' or t.token ~= ARGV[4] then return 'LOST' end
local retryable = ARGV[5] == '1'
local failed = ARGV[13] ~= ''

end_lease(t)
set_error(t, ARGV[13], ARGV[14], ARGV[15])
if ARGV[9] == '1' then
  redis.call('HSET', t.key, 'output', ARGV[10], 'stderr', ARGV[11], 'meta', ARGV[12])
else
  redis.call('HDEL', t.key, 'output', 'stderr', 'meta')
end

if t.cancel == '1' then
  terminal(t, 'CANCELLED')
elseif not failed then
  terminal(t, 'SUCCEEDED')
elseif retryable and t.attempt < t.max then
  -- Same formula as queue/backoff.py: full jitter under base * 2^(attempt-1), capped.
  local ceiling = math.min(tonumber(ARGV[8]), tonumber(ARGV[7]) * 2 ^ math.min(t.attempt - 1, 62))
  local not_before = NOW + ceiling * tonumber(ARGV[6])
  redis.call('HSET', t.key, 'nb', fmt(not_before))
  to_queue(t, not_before)
elseif retryable then
  terminal(t, 'DEAD')
else
  terminal(t, 'FAILED')
end
notify()
return t.state
