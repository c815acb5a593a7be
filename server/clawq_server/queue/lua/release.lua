-- Gives a leased task back without counting the attempt (or cancels it, if that was
-- asked meanwhile). ARGV[4] task id, ARGV[5] token. Returns 'OK' or 'LOST'.
local t = load(ARGV[4])
if not t or t.state ~= 'RUNNING' or t.token ~= ARGV[5] then return 'LOST' end
end_lease(t)
if t.cancel == '1' then
  terminal(t, 'CANCELLED')
else
  redis.call('HSET', t.key, 'attempt', math.max(t.attempt - 1, 0))
  to_queue(t, NOW)
end
notify()
return 'OK'
