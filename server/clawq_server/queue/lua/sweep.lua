-- Housekeeping run by every server about once a second: due delayed tasks to their
-- streams, expired leases settled, dead letters past retention forgotten.
-- Returns the next time something becomes due ('' if nothing).
promote()
reclaim()
redis.call('ZREMRANGEBYSCORE', DEAD, '-inf', '(' .. fmt(NOW - RETENTION))
notify()
return next_due()
