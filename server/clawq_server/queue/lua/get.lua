-- The records of the tasks whose ids are ARGV[4..], in that order, each as HGETALL's flat
-- list (empty for a task that does not exist). One call instead of a pipeline of HGETALLs:
-- the reply is parsed in C and no per-command Python runs on either side.
local out = {}
for i = 4, #ARGV do
  out[i - 3] = redis.call('HGETALL', task_key(ARGV[i]))
end
return out
