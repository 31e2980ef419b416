--[[
  Adds one or more jobs to a queue: idempotency check, job record, and XADD to the
  job's priority lane (or the scheduled set when it has a delay). One round trip.

  KEYS[1..3] lane streams high, normal, low
  KEYS[4]    waiting index (zset)
  KEYS[5]    scheduled set (zset, due time ms)
  KEYS[6]    events stream
  KEYS[7]    job key prefix      (job key = prefix .. job id)
  KEYS[8]    idempotency prefix  (key = prefix .. digest)

  ARGV[1] queue name          ARGV[2] max attempts      ARGV[3] max stalls
  ARGV[4] idempotency window ms                          ARGV[5] events stream cap
  ARGV[6] number of jobs, then 6 values per job:
          id, name, data (JSON), lane index (1..3), delay ms, idempotency digest ('' = none)

  Returns, per job, {job id, 1 if added or 0 if the idempotency key named an existing job}.
]]
--!include _common.lua

local queue, maxAttempts, maxStalls = ARGV[1], ARGV[2], ARGV[3]
local idemWindow, eventsMaxLen, count = tonumber(ARGV[4]), ARGV[5], tonumber(ARGV[6])
local waiting, scheduled, events, jobPrefix, idemPrefix = KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8]
local now = now_ms()
local lanes = { 'high', 'normal', 'low' }
local results = {}

for i = 0, count - 1 do
  local base = 7 + i * 6
  local id, name, data = ARGV[base], ARGV[base + 1], ARGV[base + 2]
  local laneIndex, delay, digest = tonumber(ARGV[base + 3]), tonumber(ARGV[base + 4]), ARGV[base + 5]
  local existing = false
  if digest ~= '' then
    existing = redis.call('GET', idemPrefix .. digest)
    -- A key whose job was removed since names nothing: the new job takes it over.
    if existing and redis.call('EXISTS', jobPrefix .. existing) == 0 then existing = false end
    if not existing then
      redis.call('SET', idemPrefix .. digest, id, 'PX', idemWindow)
    end
  end
  if existing then
    results[#results + 1] = { existing, 0 }
  else
    local job = jobPrefix .. id
    redis.call('HSET', job, 'id', id, 'name', name, 'queue', queue, 'data', data,
      'lane', lanes[laneIndex], 'createdAt', now, 'attemptsMade', 0, 'maxAttempts', maxAttempts,
      'stalls', 0, 'maxStalls', maxStalls, 'progress', 0)
    if delay > 0 then
      redis.call('HSET', job, 'state', 'delayed', 'dueAt', now + delay)
      redis.call('ZADD', scheduled, now + delay, id)
    else
      local entry = redis.call('XADD', KEYS[laneIndex], '*', 'job', id)
      redis.call('HSET', job, 'state', 'waiting', 'entry', entry)
      redis.call('ZADD', waiting, now, id)
    end
    emit(events, eventsMaxLen, 'added', id)
    results[#results + 1] = { id, 1 }
  end
end
return results
