--[[
  A worker's read: moves due scheduled jobs to their lanes, then (unless the queue is
  paused or rate limited) reads up to `want` new entries with XREADGROUP, lane by lane,
  takes one rate-limit permit per entry read and marks each job active. Reading,
  permits and the start of each job happen in one step, so a worker never holds
  entries it cannot start and never spends a permit on an entry it did not get.

  KEYS[1..3] lane streams high, normal, low
  KEYS[4]  meta hash (paused flag, weighted-read counter)
  KEYS[5]  rate limiter (zset)
  KEYS[6]  scheduled set      KEYS[7]  waiting index    KEYS[8] active index
  KEYS[9]  events stream      KEYS[10] in-flight hash   KEYS[11] job key prefix

  ARGV[1] group   ARGV[2] consumer   ARGV[3] want (free slots, >= 1)
  ARGV[4] lane weights "h,n,l" or '' for strict priority
  ARGV[5] rate limit max (0 = none)   ARGV[6] rate window ms
  ARGV[7] events stream cap           ARGV[8] most scheduled jobs moved per call

  Returns one of
    {'jobs', {lane index, entry id, job id, data, attemptsMade, stalls, 1, traceparent or nil}...}
    {'paused'}
    {'limited', ms until a permit frees}
    {'empty', ms until the next scheduled job is due (-1: none), last id of each lane}
]]
--!include _common.lua

local meta, limiter, scheduled, waiting, active = KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8]
local events, inflight, jobPrefix = KEYS[9], KEYS[10], KEYS[11]
local group, consumer, want = ARGV[1], ARGV[2], tonumber(ARGV[3])
local rateMax, rateWindow = tonumber(ARGV[5]), tonumber(ARGV[6])
local eventsMaxLen, moveLimit = ARGV[7], tonumber(ARGV[8])
local now = now_ms()

-- Scheduled jobs that are due join their lanes, paused or not.
local due = redis.call('ZRANGEBYSCORE', scheduled, '-inf', now, 'LIMIT', 0, moveLimit)
for _, id in ipairs(due) do
  local job = jobPrefix .. id
  local lane = redis.call('HGET', job, 'lane')
  if lane then
    local entry = redis.call('XADD', KEYS[LANE_INDEX[lane]], '*', 'job', id)
    redis.call('HSET', job, 'state', 'waiting', 'entry', entry)
    redis.call('HDEL', job, 'dueAt')
    redis.call('ZADD', waiting, now, id)
    emit(events, eventsMaxLen, 'waiting', id)
  end
  redis.call('ZREM', scheduled, id)
end

if redis.call('HGET', meta, 'paused') == '1' then return { 'paused' } end

local allowed, wait = free_permits(limiter, rateMax, rateWindow, want, now)
if allowed == 0 then return { 'limited', wait } end

local quota = lane_quotas(meta, ARGV[4], allowed)

-- Index writes are gathered and sent once per key at the end (one HSET, ZREM, ZADD).
local jobs, inflightPairs, startedIds, activePairs = {}, {}, {}, {}
local function read_lane(lane, count)
  if count <= 0 then return 0 end
  local reply = redis.call('XREADGROUP', 'GROUP', group, consumer, 'COUNT', count,
    'STREAMS', KEYS[lane], '>')
  if not reply then return 0 end
  local got = 0
  for _, entry in ipairs(reply[1][2]) do
    local entryId, fields = entry[1], entry[2]
    local jobId = nil
    for f = 1, #fields, 2 do
      if fields[f] == 'job' then jobId = fields[f + 1] end
    end
    local job = jobId and (jobPrefix .. jobId)
    local rec = job and redis.call('HMGET', job, 'state', 'data', 'attemptsMade', 'stalls', 'traceparent')
    if rec and rec[1] == 'waiting' then
      redis.call('HSET', job, 'state', 'active', 'processedAt', now)
      inflightPairs[#inflightPairs + 1] = lane .. ':' .. entryId
      inflightPairs[#inflightPairs + 1] = jobId
      startedIds[#startedIds + 1] = jobId
      activePairs[#activePairs + 1] = now
      activePairs[#activePairs + 1] = jobId
      take_permit(limiter, rateMax, rateWindow, now, lane .. ':' .. entryId)
      emit(events, eventsMaxLen, 'active', jobId)
      jobs[#jobs + 1] = { lane, entryId, jobId, rec[2], rec[3], rec[4], 1, rec[5] }
      got = got + 1
    else
      -- The job was removed (or its entry is not a job): nothing to run.
      redis.call('XACK', KEYS[lane], group, entryId)
    end
  end
  return got
end

local remaining = allowed
for lane = 1, 3 do
  remaining = remaining - read_lane(lane, math.min(quota[lane], remaining))
end
-- A weighted share that found its lane empty goes to the others, highest first.
for lane = 1, 3 do
  remaining = remaining - read_lane(lane, remaining)
end

if #jobs > 0 then
  call_many('HSET', inflight, inflightPairs)
  call_many('ZREM', waiting, startedIds)
  call_many('ZADD', active, activePairs)
  return { 'jobs', jobs }
end

local nextDue = -1
local first = redis.call('ZRANGE', scheduled, 0, 0, 'WITHSCORES')
if first[2] then nextDue = math.max(tonumber(first[2]) - now, 1) end
return { 'empty', nextDue, last_ids(KEYS) }
