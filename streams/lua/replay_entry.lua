--[[
  Fast path (no job records): replays one dead letter as a new entry of its lane that
  carries the letter's own data, and deletes the letter, in one step, so a letter
  replayed twice at once queues its job once. The job's id is the new entry's.

  KEYS[1..3] lane streams high, normal, low
  KEYS[4] dead letters   KEYS[5] events stream

  ARGV[1] dead-letter entry id   ARGV[2] the job id the letter must name
  ARGV[3] events cap             ARGV[4] job id prefix (the new job id is it and the entry id)

  Returns the new entry id, or false when the letter is gone or names another job.
]]
--!include _common.lua

local deadId, jobId, eventsMaxLen, jobPrefix = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local found = redis.call('XRANGE', KEYS[4], deadId, deadId)
if #found == 0 then return false end
local letter = {}
local fields = found[1][2]
for i = 1, #fields, 2 do letter[fields[i]] = fields[i + 1] end
if letter['job'] ~= jobId then return false end

local laneIndex = ({ high = 1, normal = 2, low = 3 })[letter['lane']] or 2
local entry = redis.call('XADD', KEYS[laneIndex], '*', 'data', letter['data'] or 'null')
redis.call('XDEL', KEYS[4], deadId)
emit(KEYS[5], eventsMaxLen, 'waiting', jobPrefix .. entry, 'retried', 'replay')
return entry
