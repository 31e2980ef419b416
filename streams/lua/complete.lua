--[[
  Records the success of one or more runs: for each whose entry this consumer still
  owns (fenced, see owns()), ack the entry, store the return value, move the record to
  completed with finishedAt and duration, and emit an event. Then enforce retention.

  KEYS[1..3] lane streams high, normal, low
  KEYS[4] active index   KEYS[5] completed index   KEYS[6] events stream
  KEYS[7] in-flight hash KEYS[8] job key prefix    KEYS[9] logs key prefix

  ARGV[1] group  ARGV[2] consumer  ARGV[3] completed records kept  ARGV[4] events cap
  ARGV[5] number of runs, then 5 values per run:
          lane index, entry id, delivery count, job id, return value (JSON)

  Returns, per run, 1 if recorded or 0 if the entry is no longer this run's.
]]
--!include _common.lua

local active, completed, events, inflight = KEYS[4], KEYS[5], KEYS[6], KEYS[7]
local jobPrefix, logsPrefix = KEYS[8], KEYS[9]
local group, consumer, keep, eventsMaxLen = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
local count = tonumber(ARGV[5])
local now = now_ms()
local results = {}

for i = 0, count - 1 do
  local base = 6 + i * 5
  local laneIndex, entryId, delivery = ARGV[base], ARGV[base + 1], ARGV[base + 2]
  local jobId, value = ARGV[base + 3], ARGV[base + 4]
  local lane = KEYS[tonumber(laneIndex)]
  if owns(lane, group, entryId, consumer, delivery) then
    local job = jobPrefix .. jobId
    redis.call('XACK', lane, group, entryId)
    redis.call('HDEL', inflight, laneIndex .. ':' .. entryId)
    local started = tonumber(redis.call('HGET', job, 'processedAt')) or now
    redis.call('HINCRBY', job, 'attemptsMade', 1)
    redis.call('HSET', job, 'state', 'completed', 'returnvalue', value, 'finishedAt', now,
      'duration', now - started, 'progress', 100)
    redis.call('HDEL', job, 'failedReason', 'stacktrace', 'errorType')
    redis.call('ZREM', active, jobId)
    redis.call('ZADD', completed, now, jobId)
    emit(events, eventsMaxLen, 'completed', jobId, 'duration', now - started)
    results[#results + 1] = 1
  else
    results[#results + 1] = 0
  end
end
enforce_retention(completed, keep, jobPrefix, logsPrefix)
return results
