--[[
  Removes a job in any state but active (a running job is left to finish: removing it
  would race its worker). A waiting job's entry is deleted, a delayed (backing-off) job's pending
  entry acked and deleted, a scheduled job taken off the schedule.

  KEYS[1..3] lane streams high, normal, low
  KEYS[4] scheduled set   KEYS[5] events stream   KEYS[6] in-flight hash
  KEYS[7] job key prefix  KEYS[8] logs key prefix
  KEYS[9..] state indexes (waiting, active, retrying, completed, failed)

  ARGV[1] group  ARGV[2] job id  ARGV[3] events cap
  Returns 1 removed, 0 no such job, -1 the job is active.
]]
--!include _common.lua

local group, jobId = ARGV[1], ARGV[2]
local job = KEYS[7] .. jobId
local rec = redis.call('HMGET', job, 'state', 'lane', 'entry')
local state, lane, entry = rec[1], rec[2], rec[3]
if not state then return 0 end
if state == 'active' then return -1 end

local laneIndex = LANE_INDEX[lane]
if entry and laneIndex and (state == 'waiting' or state == 'delayed') then
  redis.call('XACK', KEYS[laneIndex], group, entry)
  redis.call('XDEL', KEYS[laneIndex], entry)
  redis.call('HDEL', KEYS[6], laneIndex .. ':' .. entry)
end
redis.call('ZREM', KEYS[4], jobId)
for i = 9, #KEYS do redis.call('ZREM', KEYS[i], jobId) end
redis.call('DEL', job, KEYS[8] .. jobId)
emit(KEYS[5], ARGV[3], 'removed', jobId)
return 1
