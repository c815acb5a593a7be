-- Depths and counts: {counters (flat HGETALL), delayed, in flight, dead}.
promote()
redis.call('ZREMRANGEBYSCORE', DEAD, '-inf', '(' .. fmt(NOW - RETENTION))
notify()
return {redis.call('HGETALL', COUNTS), redis.call('ZCARD', DELAYED),
  redis.call('ZCARD', LEASES), redis.call('ZCARD', DEAD)}
