--[[
  One page of the reclaim walk over one lane's pending entries list. For each entry
  idle long enough to matter, the job's record decides, in this same step:
    delayed   -> claimed once idle >= the job's backoff (a handler failure waiting out
                 its delay; the failing worker reset the idle clock)
    active    -> claimed once idle >= the lease: its worker died or froze. The delivery
                 counter less the handler failures counts crash redeliveries; past the
                 crash budget the job is dead-lettered instead.
    finished or removed -> the stale pending entry is acked.
  A claimed entry whose body was trimmed or deleted is settled (dead-lettered) rather
  than left active. Claims take rate-limit permits and never exceed `want`; settling
  needs neither.

  KEYS[1] lane stream     KEYS[2] meta hash        KEYS[3] rate limiter
  KEYS[4] active index    KEYS[5] retrying index   KEYS[6] failed index
  KEYS[7] dead letters    KEYS[8] events stream    KEYS[9] in-flight hash
  KEYS[10] job key prefix KEYS[11] logs key prefix

  ARGV[1] group  ARGV[2] consumer  ARGV[3] want  ARGV[4] lane index
  ARGV[5] cursor: walk entries after this id ('-' to start)   ARGV[6] page size
  ARGV[7] lease ms  ARGV[8] smallest idle worth looking at (ms)
  ARGV[9] rate max (0 = none)  ARGV[10] rate window ms
  ARGV[11] events cap  ARGV[12] dead-letter cap  ARGV[13] failed records kept
  ARGV[14] queue name

  Returns {next cursor ('' when the walk is done),
           {{lane index, entry id, job id, data, attemptsMade, stalls, delivery count}...},
           number of entries settled}
]]
--!include _common.lua

local lane, meta, limiter = KEYS[1], KEYS[2], KEYS[3]
local group, consumer, want = ARGV[1], ARGV[2], tonumber(ARGV[3])
local laneIndex, cursor, pageSize = ARGV[4], ARGV[5], tonumber(ARGV[6])
local leaseMs, minIdle = tonumber(ARGV[7]), tonumber(ARGV[8])
local rateMax, rateWindow = tonumber(ARGV[9]), tonumber(ARGV[10])
local ctx = {
  group = group, queue = ARGV[14], active = KEYS[4], retrying = KEYS[5], failed = KEYS[6],
  dead = KEYS[7], events = KEYS[8], inflight = KEYS[9], jobPrefix = KEYS[10],
  logsPrefix = KEYS[11], eventsMaxLen = ARGV[11], deadMaxLen = ARGV[12],
  keepFailed = tonumber(ARGV[13]),
}
local now = now_ms()

-- A paused queue starts nothing, retries included.
if redis.call('HGET', meta, 'paused') == '1' then return { '', {}, 0 } end

local allowed = free_permits(limiter, rateMax, rateWindow, want, now)
local start = cursor == '-' and '-' or ('(' .. cursor)
local page = redis.call('XPENDING', lane, group, 'IDLE', minIdle, start, '+', pageSize)
local claimed, settled = {}, 0

for _, p in ipairs(page) do
  local entryId, idle, deliveries = p[1], tonumber(p[3]), tonumber(p[4])
  local field = laneIndex .. ':' .. entryId
  local jobId = redis.call('HGET', ctx.inflight, field)
  local job = jobId and (ctx.jobPrefix .. jobId)
  local rec = job and redis.call('HMGET', job, 'state', 'attemptsMade', 'backoffMs', 'maxStalls')
  local state = rec and rec[1]
  if not state then
    -- Finished long ago, removed, or never ours to track: nothing left to run.
    redis.call('XACK', lane, group, entryId)
    redis.call('HDEL', ctx.inflight, field)
    settled = settled + 1
  elseif state ~= 'active' and state ~= 'delayed' then
    redis.call('XACK', lane, group, entryId)
    redis.call('HDEL', ctx.inflight, field)
    settled = settled + 1
  else
    local attempts = tonumber(rec[2]) or 0
    local crash = state == 'active' and idle >= leaseMs
    local retry = state == 'delayed' and idle >= (tonumber(rec[3]) or 0)
    -- Every claim so far was a retry of a recorded failure or a crash redelivery.
    local stalls = deliveries - attempts
    if crash and stalls > (tonumber(rec[4]) or 0) then
      redis.call('HSET', job, 'stalls', stalls)
      dead_letter(ctx, job, jobId, lane, entryId, field,
        'job stalled ' .. stalls .. ' times: its worker stopped while running it', 'Stalled', now)
      settled = settled + 1
    elseif (crash or retry) and allowed > 0 then
      local got = redis.call('XCLAIM', lane, group, consumer, 0, entryId)
      if #got == 0 then
        dead_letter(ctx, job, jobId, lane, entryId, field,
          'stream entry was deleted before the job finished', 'EntryDeleted', now)
        settled = settled + 1
      else
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
        local data = redis.call('HGET', job, 'data')
        claimed[#claimed + 1] = { tonumber(laneIndex), entryId, jobId, data, attempts, stalls,
          deliveries + 1 }
        allowed = allowed - 1
      end
    end
  end
end

local nextCursor = ''
if #page == pageSize then nextCursor = page[#page][1] end
return { nextCursor, claimed, settled }
