--[[
  Extends the lease of a worker's running jobs: re-claims each entry this consumer
  still owns with JUSTID, which resets its idle time without counting a delivery, so
  the reclaim walk never takes a job from a live worker. An entry that is no longer
  this consumer's (it stalled past its lease and was taken over) is reported lost, and
  so is a run whose outcome is recorded already (a failure backing off keeps its entry
  pending to this consumer: extending it would put its retry off).

  KEYS[1..3] lane streams high, normal, low
  KEYS[4] job key prefix   KEYS[5] run outcome mark prefix (stream-kept jobs)
  ARGV[1] group  ARGV[2] consumer  ARGV[3] number of entries, then per entry:
          lane index, entry id, delivery count, job id ('' for a stream-kept job), run token

  Returns, per entry, 1 if extended or 0 if lost.
]]
--!include _common.lua

local group, consumer, count = ARGV[1], ARGV[2], tonumber(ARGV[3])
local results = {}
for i = 0, count - 1 do
  local base = 4 + i * 5
  local lane, entryId, jobId, run = KEYS[tonumber(ARGV[base])], ARGV[base + 1], ARGV[base + 3], ARGV[base + 4]
  local settled
  if jobId ~= '' then
    settled = settled_by(KEYS[4] .. jobId, run)
  else
    settled = redis.call('EXISTS', KEYS[5] .. run) == 1
  end
  if not settled and owns(lane, group, entryId, consumer, ARGV[base + 2]) then
    redis.call('XCLAIM', lane, group, consumer, 0, entryId, 'JUSTID')
    results[#results + 1] = 1
  else
    results[#results + 1] = 0
  end
end
return results
