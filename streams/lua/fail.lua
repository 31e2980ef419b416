--[[
  Records a handler failure (fenced, see owns()). With attempts left, the job becomes
  `delayed` (backing off): its entry stays pending, its idle clock is reset, and the reclaim walk
  claims it once idle passes `backoffMs`. After the last attempt (or when the error is
  unrecoverable) it is dead-lettered and acked. The outcome is noted under the run's
  token ('settled'): the same call re-sent after a lost reply answers it again and
  counts no second attempt.

  KEYS[1] lane stream     KEYS[2] active index     KEYS[3] retrying index
  KEYS[4] failed index    KEYS[5] dead letters     KEYS[6] events stream
  KEYS[7] in-flight hash  KEYS[8] job key prefix   KEYS[9] logs key prefix
  KEYS[10] meta hash (the 'failed' total)

  ARGV[1] group  ARGV[2] consumer  ARGV[3] lane index  ARGV[4] entry id
  ARGV[5] delivery count  ARGV[6] job id  ARGV[7] error message  ARGV[8] error type
  ARGV[9] stack trace  ARGV[10] backoff ms  ARGV[11] '1' if unrecoverable
  ARGV[12] failed records kept  ARGV[13] events cap  ARGV[14] dead-letter cap
  ARGV[15] queue name  ARGV[16] run token

  Returns 'retry', 'dead' or 'lost' (the entry is no longer this run's).
]]
--!include _common.lua

local lane = KEYS[1]
local group, consumer, laneIndex, entryId = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local delivery, jobId, message, errorType = ARGV[5], ARGV[6], ARGV[7], ARGV[8]
local backoffMs, unrecoverable = tonumber(ARGV[10]), ARGV[11] == '1'
local ctx = {
  group = group, queue = ARGV[15], active = KEYS[2], retrying = KEYS[3], failed = KEYS[4],
  dead = KEYS[5], events = KEYS[6], inflight = KEYS[7], jobPrefix = KEYS[8],
  logsPrefix = KEYS[9], keepFailed = tonumber(ARGV[12]), eventsMaxLen = ARGV[13],
  deadMaxLen = ARGV[14], meta = KEYS[10],
}
local now = now_ms()

local job = ctx.jobPrefix .. jobId
local run = ARGV[16]
local before = settled_by(job, run)
if before then return before end
if not owns(lane, group, entryId, consumer, delivery) then return 'lost' end

local attempts = redis.call('HINCRBY', job, 'attemptsMade', 1)
redis.call('HSET', job, 'failedReason', message, 'errorType', errorType, 'stacktrace', ARGV[9])
local maxAttempts = tonumber(redis.call('HGET', job, 'maxAttempts')) or 1

if unrecoverable or attempts >= maxAttempts then
  redis.call('HSET', job, 'settled', run .. ':dead')  -- before retention may take the record
  dead_letter(ctx, job, jobId, lane, entryId, laneIndex .. ':' .. entryId, message, errorType, now)
  return 'dead'
end

redis.call('HSET', job, 'state', 'delayed', 'backoffMs', backoffMs, 'settled', run .. ':retry')
redis.call('ZREM', ctx.active, jobId)
redis.call('ZADD', ctx.retrying, now + backoffMs, jobId)
-- Claiming our own entry with JUSTID resets its idle time without counting a delivery.
redis.call('XCLAIM', lane, group, consumer, 0, entryId, 'JUSTID')
emit(ctx.events, ctx.eventsMaxLen, 'retrying', jobId, 'attempt', attempts, 'error', message)
return 'retry'
