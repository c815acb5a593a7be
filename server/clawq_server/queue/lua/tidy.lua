-- Occasional housekeeping: removes from every ready stream's group the consumers (worker
-- ids) that hold no pending entry and have been idle longer than ARGV[4] milliseconds, so
-- workers that come and go do not pile up in the group. Returns the count removed.
local max_idle = tonumber(ARGV[4])
local removed = 0
for _, level in ipairs(redis.call('SMEMBERS', LEVELS)) do
  local s = stream_key(level)
  if redis.call('EXISTS', s) == 0 then
    redis.call('SREM', LEVELS, level)
  else
    for _, c in ipairs(redis.call('XINFO', 'CONSUMERS', s, GROUP)) do
      local info = {}
      for i = 1, #c, 2 do info[c[i]] = c[i + 1] end
      if info['pending'] == 0 and info['idle'] > max_idle then
        redis.call('XGROUP', 'DELCONSUMER', s, GROUP, info['name'])
        removed = removed + 1
      end
    end
  end
end
return removed
