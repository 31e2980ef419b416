--[[
  Stream-kept jobs: runs a failed job again as a new entry of its lane that carries the
  job's own data, from its dead letter (replay) or from its kept failure (retry), and
  deletes both in the same step, so a job replayed or retried twice at once is queued
  once. The job's new id is the new entry's.

  KEYS[1..3] lane streams high, normal, low
  KEYS[4] dead letters   KEYS[5] events stream   KEYS[6] kept failures

  ARGV[1] dead-letter entry id ('' = none: retry the kept failure)
  ARGV[2] the job id the letter (or kept failure) must name
  ARGV[3] events cap     ARGV[4] job id prefix (the new job id is it and the entry id)

  Returns the new entry id, or false when the letter (or the kept failure) is gone or
  names another job.
]]
--!include _common.lua

local deadId, jobId, eventsMaxLen, jobPrefix = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local source
if deadId ~= '' then
  local letter = redis.call('XRANGE', KEYS[4], deadId, deadId)[1]
  if not letter or field_of(letter[2], 'job') ~= jobId then return false end
  source = letter[2]
  redis.call('XDEL', KEYS[4], deadId)
end
local keptId, kept = find_kept(KEYS[6], jobId)
if keptId then
  redis.call('XDEL', KEYS[6], keptId)
  source = source or kept
end
if not source then return false end

local laneIndex = LANE_INDEX[field_of(source, 'lane')] or 2
local entry = redis.call('XADD', KEYS[laneIndex], '*', 'data', field_of(source, 'data') or 'null')
emit(KEYS[5], eventsMaxLen, 'waiting', jobPrefix .. entry, 'retried', deadId ~= '' and 'replay' or 'retry')
return entry
