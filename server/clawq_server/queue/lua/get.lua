-- The records of tasks, each as the values of the fields in ARGV[5 .. 4 + ARGV[4]] (nil
-- where a field is absent; all nil for a task that does not exist), for the ids that
-- follow, in that order. One call instead of a pipeline of reads: the reply is parsed in
-- C, and only the fields a reader needs cross the wire.
local nfields = tonumber(ARGV[4])
local fields = {}
for i = 1, nfields do fields[i] = ARGV[4 + i] end
local out = {}
for i = 5 + nfields, #ARGV do
  out[#out + 1] = redis.call('HMGET', task_key(ARGV[i]), unpack(fields))
end
return out
