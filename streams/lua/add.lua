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
  ARGV[6] the jobs as one JSON array (one argument instead of 6 per job: packing them
          was most of the client's cost), each [id, name, data (JSON text),
          lane index (1..3), delay ms, idempotency digest ('' = none)]
  ARGV[7] the adding span's W3C traceparent, kept in every record ('' = tracing off)

  Returns, per job, {job id, 1 if added or 0 if the idempotency key named an existing job}.
]]
--!include _common.lua

local queue, maxAttempts, maxStalls = ARGV[1], ARGV[2], ARGV[3]
local idemWindow, eventsMaxLen, jobs = tonumber(ARGV[4]), ARGV[5], cjson.decode(ARGV[6])
local traceparent = ARGV[7]
local waiting, scheduled, events, jobPrefix, idemPrefix = KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8]
local now = now_ms()
local results = {}

for _, job in ipairs(jobs) do
  local id, name, data, laneIndex, delay, digest = job[1], job[2], job[3], job[4], job[5], job[6]
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
    local state, field, value  -- delayed with its due time, or waiting with its entry
    if delay > 0 then
      state, field, value = 'delayed', 'dueAt', now + delay
      redis.call('ZADD', scheduled, now + delay, id)
    else
      state, field = 'waiting', 'entry'
      value = redis.call('XADD', KEYS[laneIndex], '*', 'job', id)
      redis.call('ZADD', waiting, now, id)
    end
    redis.call('HSET', jobPrefix .. id, 'id', id, 'name', name, 'queue', queue, 'data', data,
      'lane', LANE_NAMES[laneIndex], 'createdAt', now, 'attemptsMade', 0, 'maxAttempts', maxAttempts,
      'stalls', 0, 'maxStalls', maxStalls, 'progress', 0, 'state', state, field, value)
    if traceparent ~= '' then redis.call('HSET', jobPrefix .. id, 'traceparent', traceparent) end
    emit(events, eventsMaxLen, 'added', id)
    results[#results + 1] = { id, 1 }
  end
end
return results
