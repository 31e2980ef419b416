--[[
  Records the success of one or more runs: for each whose entry this consumer still
  owns (fenced, see owns()), ack the entry, store the return value, move the record to
  completed with finishedAt and duration, note the run's token ('settled'), and emit an
  event. Then enforce retention. A run that recorded its success already (the call is
  re-sent after a lost reply) counts as recorded, and changes nothing.

  KEYS[1..3] lane streams high, normal, low
  KEYS[4] active index   KEYS[5] completed index   KEYS[6] events stream
  KEYS[7] in-flight hash KEYS[8] job key prefix    KEYS[9] logs key prefix
  KEYS[10] meta hash (the 'completed' total)

  ARGV[1] group  ARGV[2] consumer  ARGV[3] completed records kept  ARGV[4] events cap
  ARGV[5] the runs as one JSON array (one argument instead of 5 per run, whose packing
          was the client's largest cost), each [lane index, entry id, delivery count,
          job id, return value (JSON text), run token]

  Returns, per run, 1 if recorded (now or by this run before) or 0 if the entry is no
  longer this run's.
  Acks and index writes are gathered and sent once per key at the end.
]]
--!include _common.lua

local active, completed, events, inflight = KEYS[4], KEYS[5], KEYS[6], KEYS[7]
local jobPrefix, logsPrefix = KEYS[8], KEYS[9]
local group, consumer, keep, eventsMaxLen = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
local runs = cjson.decode(ARGV[5])
local now = now_ms()
local results = {}
local acks, inflightFields, doneIds, completedPairs = { {}, {}, {} }, {}, {}, {}

for _, run in ipairs(runs) do
  local lane, entryId, delivery, jobId, value, token = run[1], run[2], run[3], run[4], run[5], run[6]
  if owns(KEYS[lane], group, entryId, consumer, delivery) then
    local job = jobPrefix .. jobId
    local laneAcks = acks[lane]
    laneAcks[#laneAcks + 1] = entryId
    inflightFields[#inflightFields + 1] = lane .. ':' .. entryId
    local rec = redis.call('HMGET', job, 'processedAt', 'attemptsMade')
    local started = tonumber(rec[1]) or now
    redis.call('HSET', job, 'state', 'completed', 'returnvalue', value, 'finishedAt', now,
      'duration', now - started, 'progress', 100, 'attemptsMade', (tonumber(rec[2]) or 0) + 1,
      'settled', token .. ':completed')
    redis.call('HDEL', job, 'failedReason', 'stacktrace', 'errorType')
    doneIds[#doneIds + 1] = jobId
    completedPairs[#completedPairs + 1] = now
    completedPairs[#completedPairs + 1] = jobId
    emit(events, eventsMaxLen, 'completed', jobId, 'duration', now - started)
    results[#results + 1] = 1
  elseif settled_by(jobPrefix .. jobId, token) == 'completed' then
    results[#results + 1] = 1
  else
    results[#results + 1] = 0
  end
end
for lane = 1, 3 do
  for i = 1, #acks[lane], 1000 do
    redis.call('XACK', KEYS[lane], group, unpack(acks[lane], i, math.min(i + 999, #acks[lane])))
  end
end
call_many('HDEL', inflight, inflightFields)
call_many('ZREM', active, doneIds)
call_many('ZADD', completed, completedPairs)
if #doneIds > 0 then redis.call('HINCRBY', KEYS[10], 'completed', #doneIds) end
enforce_retention(completed, keep, jobPrefix, logsPrefix)
return results
