-- The records of tasks, each as its READ_FIELDS values (nil where a field is absent; all
-- nil for a task that does not exist), for the ids in ARGV[4 ..], in that order. One call
-- instead of a pipeline of reads: the reply is parsed in C, and only the fields a reader
-- needs cross the wire.
local out = {}
for i = 4, #ARGV do
  out[#out + 1] = redis.call('HMGET', task_key(ARGV[i]), unpack(READ_FIELDS))
end
return out
