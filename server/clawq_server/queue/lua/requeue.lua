-- Puts DEAD tasks back in the queue with a fresh attempt budget. ARGV[4] '1' for every
-- dead letter, else the ids follow from ARGV[5]. Returns the count moved.
local ids = {}
if ARGV[4] == '1' then
  ids = redis.call('ZRANGE', DEAD, 0, -1)
else
  for i = 5, #ARGV do ids[#ids + 1] = ARGV[i] end
end
local moved = 0
for _, id in ipairs(ids) do
  local t = load(id)
  redis.call('ZREM', DEAD, id)
  if t and t.state == 'DEAD' then
    redis.call('PERSIST', t.key)
    if t.ikk then redis.call('PERSIST', t.ikk) end
    redis.call('HSET', t.key, 'attempt', 0, 'cancel', '0', 'nb', NOW_S)
    redis.call('HDEL', t.key, 'finished')
    t.attempt = 0
    to_queue(t, NOW)
    moved = moved + 1
  end
end
notify()
return moved
