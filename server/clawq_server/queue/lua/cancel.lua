-- Cancels a queued task now, or flags a running one for its worker. ARGV[4] task id,
-- ARGV[5] '1' when scoped to the principal in ARGV[6].
-- Returns {'OK', fields}, {'NOT_FOUND'} or {'FINISHED', state}.
local t = load(ARGV[4])
if not t or (ARGV[5] == '1' and t.principal ~= ARGV[6]) then return {'NOT_FOUND'} end
if t.state ~= 'QUEUED' and t.state ~= 'RUNNING' then return {'FINISHED', t.state} end
if t.state == 'QUEUED' then
  if t.sid then
    drop_entry(t)
    redis.call('HDEL', t.key, 'sid')
    redis.call('HINCRBY', COUNTS, 'r:' .. t.prio, -1)
  else
    redis.call('ZREM', DELAYED, t.id)
  end
  redis.call('HINCRBY', COUNTS, 'queued', -1)
  terminal(t, 'CANCELLED')
else
  redis.call('HSET', t.key, 'cancel', '1')
  redis.call('PUBLISH', EVENTS, 'c ' .. t.id)
end
notify()
return {'OK', redis.call('HGETALL', t.key)}
