-- Extends the leases still held. ARGV[4] new expiry, then (task id, token) pairs.
-- Returns {lost ids, cancelled ids}.
local lexp = ARGV[4]
local lost, cancelled = {}, {}
for i = 5, #ARGV, 2 do
  local id = ARGV[i]
  local v = redis.call('HMGET', task_key(id), 'state', 'token', 'cancel')
  if v[1] ~= 'RUNNING' or v[2] ~= ARGV[i + 1] then
    lost[#lost + 1] = id
  else
    redis.call('HSET', task_key(id), 'lexp', lexp)
    redis.call('ZADD', LEASES, 'XX', lexp, id)
    if v[3] == '1' then cancelled[#cancelled + 1] = id end
  end
end
return {lost, cancelled}
