--[[
  One page of the reclaim walk over the pending entries lists of the three lanes. For each entry
  idle long enough to matter, the job's record decides, in this same step:
    delayed   -> claimed once idle >= the job's backoff (a handler failure waiting out
                 its delay; the failing worker reset the idle clock)
    active    -> claimed once idle >= the lease: its worker died or froze. The delivery
                 counter less the handler failures counts crash redeliveries; past the
                 crash budget the job is dead-lettered instead.
    finished or removed -> the stale pending entry is acked.
  Stream-kept entries have no record: their failures hash entry (absent until a
  first failure) holds the same state, attempts and backoff.
  A claimed entry whose body was trimmed or deleted is settled (dead-lettered) rather
  than left active. Claims take rate-limit permits and never exceed `want`; settling
  needs neither.

  KEYS[1..3] lane streams high, normal, low
  KEYS[4] meta hash       KEYS[5] rate limiter     KEYS[6] active index
  KEYS[7] retrying index  KEYS[8] failed index     KEYS[9] dead letters
  KEYS[10] events stream  KEYS[11] in-flight hash  KEYS[12] job key prefix
  KEYS[13] logs key prefix  KEYS[14] failures hash (stream-kept jobs)
  KEYS[15] kept failures stream (stream-kept jobs)

  ARGV[1] group  ARGV[2] consumer  ARGV[3] want
  ARGV[4] lane index to walk  ARGV[5] walk its entries after this id ('-' to start)
  ARGV[6] page size (entries looked at per call, over all lanes)
  ARGV[7] lease ms  ARGV[8] smallest idle worth looking at (ms)
  ARGV[9] rate max (0 = none)  ARGV[10] rate window ms
  ARGV[11] events cap  ARGV[12] dead-letter cap  ARGV[13] failed records kept
  ARGV[14] queue name  ARGV[15] crash redeliveries allowed (max stalls)
  ARGV[16] job id prefix of fast-path entries (the job id is it and the entry id)

  Returns {next lane index (0 when the walk is done), next cursor id,
           {{lane index, entry id, job id, data, attemptsMade, stalls, delivery count,
             traceparent or nil}...},
           number of entries settled}
]]
--!include _common.lua

local meta, limiter = KEYS[4], KEYS[5]
local group, consumer, want = ARGV[1], ARGV[2], tonumber(ARGV[3])
local laneIndex, cursor, pageSize = tonumber(ARGV[4]), ARGV[5], tonumber(ARGV[6])
local leaseMs, minIdle = tonumber(ARGV[7]), tonumber(ARGV[8])
local rateMax, rateWindow = tonumber(ARGV[9]), tonumber(ARGV[10])
local maxStalls = tonumber(ARGV[15])
local ctx = {
  group = group, queue = ARGV[14], active = KEYS[6], retrying = KEYS[7], failed = KEYS[8],
  dead = KEYS[9], events = KEYS[10], inflight = KEYS[11], jobPrefix = KEYS[12],
  logsPrefix = KEYS[13], failures = KEYS[14], eventsMaxLen = ARGV[11], deadMaxLen = ARGV[12],
  keepFailed = tonumber(ARGV[13]), meta = KEYS[4], keptFailed = KEYS[15],
}
local now = now_ms()

-- A paused queue starts nothing, retries included.
if redis.call('HGET', meta, 'paused') == '1' then return { 0, '', {}, 0 } end

local allowed = free_permits(limiter, rateMax, rateWindow, want, now)
local claimed, settled, budget = {}, 0, pageSize

-- A stream-kept entry: no record, its retry state (if it ever failed) in the failures hash.
local function visit_entry(lane, p)
  local entryId, idle, deliveries = p[1], tonumber(p[3]), tonumber(p[4])
  local laneKey, field = KEYS[lane], lane .. ':' .. entryId
  local jobId = ARGV[16] .. entryId
  local state, attempts, backoff = entry_mark(ctx.failures, field)
  local crash = state == 'active' and idle >= leaseMs
  local retry = state == 'delayed' and idle >= backoff
  local stalls = deliveries - attempts
  if crash and stalls > maxStalls then
    local body = redis.call('XRANGE', laneKey, entryId, entryId)
    dead_letter_entry(ctx, laneKey, LANE_NAMES[lane], entryId, field, jobId, body[1] and entry_data(body[1][2]),
      'job stalled ' .. stalls .. ' times: its worker stopped while running it', 'Stalled',
      attempts, stalls, now)
    settled = settled + 1
  elseif (crash or retry) and allowed > 0 then
    local got = redis.call('XCLAIM', laneKey, group, consumer, 0, entryId)
    if #got == 0 then
      dead_letter_entry(ctx, laneKey, LANE_NAMES[lane], entryId, field, jobId, nil,
        'stream entry was deleted before the job finished', 'EntryDeleted', attempts, stalls, now)
      settled = settled + 1
      return
    end
    redis.call('HSET', ctx.failures, field, 'active:' .. attempts .. ':0')
    if crash then emit(ctx.events, ctx.eventsMaxLen, 'stalled', jobId, 'stalls', stalls) end
    take_permit(limiter, rateMax, rateWindow, now, field .. ':' .. (deliveries + 1))
    claimed[#claimed + 1] = { lane, entryId, jobId, entry_data(got[1][2]), attempts, stalls,
      deliveries + 1, field_of(got[1][2], 'traceparent') or false }
    allowed = allowed - 1
  end
end

local function visit(lane, p)
  local entryId, idle, deliveries = p[1], tonumber(p[3]), tonumber(p[4])
  local laneKey = KEYS[lane]
  local field = lane .. ':' .. entryId
  local jobId = redis.call('HGET', ctx.inflight, field)
  if not jobId then return visit_entry(lane, p) end
  local job = ctx.jobPrefix .. jobId
  local rec = redis.call('HMGET', job, 'state', 'attemptsMade', 'backoffMs')
  local state = rec[1]
  if state ~= 'active' and state ~= 'delayed' then
    -- Finished, removed, or never ours to track: nothing left to run.
    redis.call('XACK', laneKey, group, entryId)
    redis.call('HDEL', ctx.inflight, field)
    settled = settled + 1
    return
  end
  local attempts = tonumber(rec[2]) or 0
  local crash = state == 'active' and idle >= leaseMs
  local retry = state == 'delayed' and idle >= (tonumber(rec[3]) or 0)
  -- Every claim so far was a retry of a recorded failure or a crash redelivery.
  local stalls = deliveries - attempts
  if crash and stalls > maxStalls then
    redis.call('HSET', job, 'stalls', stalls)
    dead_letter(ctx, job, jobId, laneKey, entryId, field,
      'job stalled ' .. stalls .. ' times: its worker stopped while running it', 'Stalled', now)
    settled = settled + 1
  elseif (crash or retry) and allowed > 0 then
    local got = redis.call('XCLAIM', laneKey, group, consumer, 0, entryId)
    if #got == 0 then
      dead_letter(ctx, job, jobId, laneKey, entryId, field,
        'stream entry was deleted before the job finished', 'EntryDeleted', now)
      settled = settled + 1
      return
    end
    if crash then
      redis.call('HSET', job, 'stalls', stalls)
      emit(ctx.events, ctx.eventsMaxLen, 'stalled', jobId, 'stalls', stalls)
    end
    redis.call('HSET', job, 'state', 'active', 'processedAt', now)
    redis.call('HDEL', job, 'backoffMs')
    redis.call('ZREM', ctx.retrying, jobId)
    redis.call('ZADD', ctx.active, now, jobId)
    take_permit(limiter, rateMax, rateWindow, now, field .. ':' .. (deliveries + 1))
    emit(ctx.events, ctx.eventsMaxLen, 'active', jobId)
    local body = redis.call('HMGET', job, 'data', 'traceparent')
    claimed[#claimed + 1] = { lane, entryId, jobId, body[1], attempts, stalls, deliveries + 1, body[2] }
    allowed = allowed - 1
  end
end

while laneIndex <= 3 and budget > 0 do
  local start = cursor == '-' and '-' or ('(' .. cursor)
  local page = redis.call('XPENDING', KEYS[laneIndex], group, 'IDLE', minIdle, start, '+', budget)
  for _, p in ipairs(page) do visit(laneIndex, p) end
  budget = budget - #page
  if budget > 0 then
    laneIndex, cursor = laneIndex + 1, '-'
  else
    cursor = page[#page][1]
  end
end

if laneIndex > 3 then return { 0, '', claimed, settled } end
return { laneIndex, cursor, claimed, settled }
