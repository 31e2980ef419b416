--[[
  Stream-kept jobs (no job records): records a failed entry (fenced, see owns()). With
  attempts left its retry state goes into the failures hash, the entry stays pending
  and its idle clock is reset, so the reclaim walk claims it once idle passes the
  backoff. After the last attempt (or when unrecoverable) it is dead-lettered with
  its own data, kept among the failed jobs, and acked. The outcome is kept a short while
  under the run's token (KEYS[7]): the same call re-sent after a lost reply answers it
  again and changes nothing.

  KEYS[1] lane stream   KEYS[2] failures hash   KEYS[3] dead letters   KEYS[4] events stream
  KEYS[5] meta hash (the 'failed' total)   KEYS[6] kept failures stream
  KEYS[7] this run's outcome mark

  ARGV[1] group  ARGV[2] consumer  ARGV[3] lane index  ARGV[4] lane name  ARGV[5] entry id
  ARGV[6] delivery count  ARGV[7] job id  ARGV[8] data (JSON, as the entry had it)
  ARGV[9] error message  ARGV[10] error type  ARGV[11] attempts made before this one
  ARGV[12] stalls  ARGV[13] backoff ms  ARGV[14] '1' if unrecoverable
  ARGV[15] max attempts  ARGV[16] dead-letter cap  ARGV[17] events cap  ARGV[18] queue name
  ARGV[19] failed jobs kept   ARGV[20] ms the run's outcome mark is kept

  Returns 'retry', 'dead' or 'lost' (the entry is no longer this run's).
]]
--!include _common.lua

local lane = KEYS[1]
local group, consumer, laneIndex, laneName = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local entryId, delivery, jobId, data = ARGV[5], ARGV[6], ARGV[7], ARGV[8]
local message, errorType = ARGV[9], ARGV[10]
local attempts, stalls = tonumber(ARGV[11]) + 1, ARGV[12]
local backoffMs, unrecoverable, maxAttempts = tonumber(ARGV[13]), ARGV[14] == '1', tonumber(ARGV[15])
local ctx = { group = group, queue = ARGV[18], failures = KEYS[2], dead = KEYS[3], events = KEYS[4],
              deadMaxLen = ARGV[16], eventsMaxLen = ARGV[17], meta = KEYS[5], keptFailed = KEYS[6],
              keepFailed = tonumber(ARGV[19]) }
local field = laneIndex .. ':' .. entryId

local before = redis.call('GET', KEYS[7])
if before then return before end
if not owns(lane, group, entryId, consumer, delivery) then return 'lost' end

if unrecoverable or attempts >= maxAttempts then
  dead_letter_entry(ctx, lane, laneName, entryId, field, jobId, data, message, errorType,
    attempts, stalls, now_ms())
  redis.call('SET', KEYS[7], 'dead', 'PX', ARGV[20])
  return 'dead'
end

redis.call('HSET', ctx.failures, field, 'delayed:' .. attempts .. ':' .. backoffMs)
-- Claiming our own entry with JUSTID resets its idle time without counting a delivery.
redis.call('XCLAIM', lane, group, consumer, 0, entryId, 'JUSTID')
emit(ctx.events, ctx.eventsMaxLen, 'retrying', jobId, 'attempt', attempts, 'error', message)
redis.call('SET', KEYS[7], 'retry', 'PX', ARGV[20])
return 'retry'
