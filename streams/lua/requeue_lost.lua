--[[
  One page of the walk over a queue's waiting jobs that finds the ones no worker will
  ever read: a waiting job whose stream entry is gone (a Redis that evicts keys dropped
  it, or its whole lane), or sits behind what the group has read without being pending
  (its group was recreated past it). Each gets a new entry in its lane, in this step.
  A waiting id whose record is gone is dead-lettered (RecordMissing, see bury_missing()):
  never dropped silently. A job read since is `active`, not waiting, so the walk
  never queues a running job twice.

  KEYS[1..3] lane streams high, normal, low
  KEYS[4] waiting index   KEYS[5] events stream   KEYS[6] job key prefix
  KEYS[7] dead letters    KEYS[8] meta hash (the 'failed' total)

  ARGV[1] group   ARGV[2] ZSCAN cursor ('0' to start)   ARGV[3] ZSCAN count
  ARGV[4] events cap   ARGV[5] dead-letter cap   ARGV[6] queue name

  Returns {next cursor ('0' when the walk is done), {ids queued again}, {ids dead-lettered}}
]]
--!include _common.lua

local waiting, events, jobPrefix = KEYS[4], KEYS[5], KEYS[6]
local group, eventsMaxLen = ARGV[1], ARGV[4]
local ctx = { group = group, queue = ARGV[6], dead = KEYS[7], deadMaxLen = ARGV[5], meta = KEYS[8],
              events = events, eventsMaxLen = eventsMaxLen, waiting = waiting, jobPrefix = jobPrefix }
local now = now_ms()
local lastRead = {}
for lane = 1, 3 do lastRead[lane] = redis.call('EXISTS', KEYS[lane]) == 1 and last_read(KEYS[lane], group) end

-- Whether a worker will read `entry` of `lane`: it exists, and the group has not read
-- past it, or holds it pending.
local function readable(lane, entry)
  if not entry or #redis.call('XRANGE', KEYS[lane], entry, entry) == 0 then return false end
  local last = lastRead[lane]
  if not last or after(entry, last) then return true end
  return #redis.call('XPENDING', KEYS[lane], group, entry, entry, 1) > 0
end

local scan = redis.call('ZSCAN', waiting, ARGV[2], 'COUNT', tonumber(ARGV[3]))
local requeued, buried = {}, {}
local members = scan[2]
for i = 1, #members, 2 do
  local id = members[i]
  local job = jobPrefix .. id
  local rec = redis.call('HMGET', job, 'state', 'lane', 'entry')
  local lane = LANE_INDEX[rec[2] or '']
  if not rec[1] then
    bury_missing(ctx, nil, nil, nil, id, members[i + 1], now)
    buried[#buried + 1] = id
  elseif rec[1] == 'waiting' and lane and not readable(lane, rec[3]) then
    local entry = redis.call('XADD', KEYS[lane], '*', 'job', id)
    redis.call('HSET', job, 'entry', entry)
    emit(events, eventsMaxLen, 'waiting', id, 'requeued', 1)
    requeued[#requeued + 1] = id
  end
end
return { scan[1], requeued, buried }
