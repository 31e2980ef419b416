--[[
  Runs a failed job again with fresh attempts: a new entry in its lane, attempts and
  stalls reset. With a dead-letter entry id, the dead letter is deleted in the same
  step (replay), and the job is recreated from it when its record was already cleaned
  away. Only `failed` jobs qualify, so a job the reclaimer is retrying, or a dead
  letter replayed twice, is never run twice.

  KEYS[1..3] lane streams high, normal, low
  KEYS[4] waiting index   KEYS[5] failed index   KEYS[6] dead letters
  KEYS[7] events stream   KEYS[8] job key prefix

  ARGV[1] job id  ARGV[2] dead-letter entry id ('' = none)  ARGV[3] events cap
  ARGV[4] queue name  ARGV[5] max attempts  ARGV[6] max stalls
  Returns 1 queued, 0 no such job (or dead letter), -1 the job is not failed (a dead
  letter of a job retried since is stale, and is deleted).
]]
--!include _common.lua

local jobId, deadId, eventsMaxLen = ARGV[1], ARGV[2], ARGV[3]
local job = KEYS[8] .. jobId
local now = now_ms()

if deadId ~= '' then
  local dead = redis.call('XRANGE', KEYS[6], deadId, deadId)
  if #dead == 0 then return 0 end
  local letter = {}
  local fields = dead[1][2]
  for i = 1, #fields, 2 do letter[fields[i]] = fields[i + 1] end
  if letter['job'] ~= jobId then return 0 end
  if redis.call('EXISTS', job) == 0 then
    redis.call('HSET', job, 'id', jobId, 'name', letter['name'], 'queue', ARGV[4],
      'data', letter['data'], 'lane', LANE_INDEX[letter['lane']] and letter['lane'] or 'normal',
      'createdAt', letter['createdAt'], 'state', 'failed')
  end
end

local rec = redis.call('HMGET', job, 'state', 'lane')
if not rec[1] then return 0 end
if deadId ~= '' then redis.call('XDEL', KEYS[6], deadId) end
if rec[1] ~= 'failed' then return -1 end

local entry = redis.call('XADD', KEYS[LANE_INDEX[rec[2]] or 2], '*', 'job', jobId)
redis.call('HSET', job, 'state', 'waiting', 'entry', entry, 'attemptsMade', 0, 'stalls', 0,
  'maxAttempts', ARGV[5], 'maxStalls', ARGV[6], 'progress', 0)
redis.call('HDEL', job, 'failedReason', 'errorType', 'stacktrace', 'finishedAt', 'processedAt',
  'returnvalue', 'duration', 'backoffMs')
redis.call('ZREM', KEYS[5], jobId)
redis.call('ZADD', KEYS[4], now, jobId)
emit(KEYS[7], eventsMaxLen, 'waiting', jobId, 'retried', deadId ~= '' and 'replay' or 'retry')
return 1
