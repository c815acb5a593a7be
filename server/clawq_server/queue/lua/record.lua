-- Stores finished tasks whole (calls answered from the cache): the record, the result and
-- the index entries, expiring like any finished task and fed to the archive. ITEM values
-- per task: id, principal, tool, created, state, attempt, started, finished, the record
-- ('r'), 'k', output, stderr, result metadata JSON ('' without a result). A task already
-- stored is left alone.
local ITEM = 13
for o = 4, #ARGV - ITEM + 1, ITEM do
  local id, principal, tool, created, state = ARGV[o], ARGV[o + 1], ARGV[o + 2], ARGV[o + 3],
    ARGV[o + 4]
  local key = task_key(id)
  if redis.call('EXISTS', key) == 0 then
    redis.call('HSET', key, 'state', state, 'attempt', ARGV[o + 5], 'started', ARGV[o + 6],
      'finished', ARGV[o + 7], 'r', ARGV[o + 8], 'k', ARGV[o + 9])
    if ARGV[o + 12] ~= '' then
      redis.call('HSET', key, 'output', ARGV[o + 10], 'stderr', ARGV[o + 11], 'meta', ARGV[o + 12])
    end
    redis.call('EXPIRE', key, RETENTION)
    redis.call('ZADD', IDX_ALL, created, id)
    redis.call('ZADD', idx_p(principal), created, id)
    redis.call('ZADD', idx_ps(principal, state), created, id)
    redis.call('ZADD', idx_pt(principal, tool), created, id)
    ev.done[#ev.done + 1] = id
  end
end
notify()
return 'OK'
