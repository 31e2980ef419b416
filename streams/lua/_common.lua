--[[
  Helpers shared by the scripts. Not a script of its own: scripts.py pastes it where
  a script has an include line naming this file. Every key arrives as an argument; nothing
  here builds a key except by appending a job id to a prefix handed in through KEYS.
]]

-- The priority lanes, in the order of KEYS[1..3] of every script that takes them.
local LANE_NAMES = { 'high', 'normal', 'low' }
local LANE_INDEX = { high = 1, normal = 2, low = 3 }

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Sliding-window rate limiter on the server's clock. Returns how many of `want`
-- permits are free now and, when none is, how many ms until one will be.
local function free_permits(limiterKey, max, windowMs, want, now)
  if max <= 0 then return want, 0 end
  redis.call('ZREMRANGEBYSCORE', limiterKey, '-inf', now - windowMs)
  local free = max - redis.call('ZCARD', limiterKey)
  if free <= 0 then
    local oldest = redis.call('ZRANGE', limiterKey, 0, 0, 'WITHSCORES')
    local wait = windowMs
    if oldest[2] then wait = tonumber(oldest[2]) + windowMs - now end
    if wait < 1 then wait = 1 end
    return 0, wait
  end
  if free < want then return free, 0 end
  return want, 0
end

-- Takes one permit, named by the entry it was spent on (unique per delivery).
local function take_permit(limiterKey, max, windowMs, now, member)
  if max <= 0 then return end
  redis.call('ZADD', limiterKey, now, member)
  redis.call('PEXPIRE', limiterKey, windowMs)
end

-- How many entries a read asks of each lane: all of `allowed` from the highest
-- (strict priority, `weights` ''), or a weighted share ("h,n,l"). Slot k of the weighted
-- cycle belongs to the lane whose cumulative weight covers k; a counter in the meta hash
-- carries the position across reads, so even one slot per read visits every lane in
-- proportion over time. A share that finds its lane empty is the caller's to pass on.
local function lane_quotas(meta, weightsArg, allowed)
  if weightsArg == '' then return { allowed, 0, 0 } end
  local weights, total = {}, 0
  for w in string.gmatch(weightsArg, '%d+') do
    weights[#weights + 1] = tonumber(w)
    total = total + tonumber(w)
  end
  local start = redis.call('HINCRBY', meta, 'cycle', allowed) - allowed
  local quota = { 0, 0, 0 }
  for s = 0, allowed - 1 do
    local k = (start + s) % total
    local lane = 1
    while k >= weights[lane] do
      k = k - weights[lane]
      lane = lane + 1
    end
    quota[lane] = quota[lane] + 1
  end
  return quota
end

-- The newest entry id of each lane ('0-0' when empty): what a worker that found nothing
-- to read blocks on with XREAD.
local function last_ids(lanes)
  local ids = {}
  for lane = 1, 3 do
    local last = redis.call('XREVRANGE', lanes[lane], '+', '-', 'COUNT', 1)
    ids[lane] = (last[1] and last[1][1]) or '0-0'
  end
  return ids
end

-- One command over many values (field-value or score-member pairs, or members), sent in
-- chunks that stay inside Lua's stack limit; nothing is sent for no values.
local function call_many(command, key, values)
  for i = 1, #values, 1000 do
    redis.call(command, key, unpack(values, i, math.min(i + 999, #values)))
  end
end

local function emit(eventsKey, maxLen, event, jobId, ...)
  redis.call('XADD', eventsKey, 'MAXLEN', '~', maxLen, '*', 'event', event, 'job', jobId, ...)
end

-- The byte offset (0-based) where `s` stops being valid UTF-8, or nil when it all is
-- (Python's strict decoder's rule: no overlong forms, no surrogates, nothing past
-- U+10FFFF). ASCII, the common case, is answered by one C-speed find.
local function invalid_utf8_at(s)
  if not string.find(s, '[\128-\255]') then return nil end
  local i, n = 1, #s
  while i <= n do
    local c = string.byte(s, i)
    local len, low, high = 1, 0x80, 0xBF  -- bounds of the second byte
    if c >= 0xC2 and c <= 0xDF then len = 2
    elseif c >= 0xE0 and c <= 0xEF then
      len = 3
      if c == 0xE0 then low = 0xA0 elseif c == 0xED then high = 0x9F end
    elseif c >= 0xF0 and c <= 0xF4 then
      len = 4
      if c == 0xF0 then low = 0x90 elseif c == 0xF4 then high = 0x8F end
    elseif c >= 0x80 then return i - 1 end
    for j = i + 1, i + len - 1 do
      local b = string.byte(s, j)
      if not b or b < low or b > high then return i - 1 end
      low, high = 0x80, 0xBF
    end
    i = i + len
  end
  return nil
end

-- `s` with every byte above 127 written as \xNN: what a dead letter keeps of data that
-- is not UTF-8, so every reader can decode it (streams/fastpath.py escapes the same way).
local function ascii_escaped(s)
  return (string.gsub(s, '[\128-\255]', function(c) return string.format('\\x%02x', string.byte(c)) end))
end

-- Entry data as a job may carry it: (data, '') when it is UTF-8 (or absent), else its
-- escaped form and the reason it cannot run.
local function checked_data(data)
  local at = data and invalid_utf8_at(data)
  if not at then return data, '' end
  return ascii_escaped(data), string.format('entry data is not valid UTF-8 (byte 0x%02x at offset %d)',
    string.byte(data, at + 1), at)
end

-- Keeps the newest `keep` ids of a finished-state index; deletes older records.
local function enforce_retention(indexKey, keep, jobPrefix, logsPrefix)
  local excess = redis.call('ZCARD', indexKey) - keep
  if excess <= 0 then return end
  local old = redis.call('ZRANGE', indexKey, 0, excess - 1)
  for _, id in ipairs(old) do
    redis.call('DEL', jobPrefix .. id, logsPrefix .. id)
  end
  redis.call('ZREMRANGEBYRANK', indexKey, 0, excess - 1)
end

-- What every final failure does, on either way of keeping jobs: the dead letter (the
-- job as it was, `letter`, and why it failed), the ack of its entry (if it has one), the queue's total
-- of final failures and the `failed` event.
local function bury(ctx, laneKey, entryId, jobId, letter, reason, errorType, now)
  redis.call('XADD', ctx.dead, 'MAXLEN', '~', ctx.deadMaxLen, '*',
    'job', jobId, 'queue', ctx.queue, 'name', letter.name, 'lane', letter.lane, 'data', letter.data,
    'error', reason, 'errorType', errorType, 'attempts', letter.attempts, 'stalls', letter.stalls,
    'createdAt', letter.createdAt, 'failedAt', now)
  if entryId then redis.call('XACK', laneKey, ctx.group, entryId) end
  redis.call('HINCRBY', ctx.meta, 'failed', 1)
  emit(ctx.events, ctx.eventsMaxLen, 'failed', jobId, 'error', reason)
end

-- Removing a job deletes its entry and its index membership, so a recorded job's entry or
-- waiting id outliving its record means Redis dropped the record: a server that evicts keys.
local RECORD_MISSING = 'job record missing (evicted? see maxmemory-policy)'
local TOMBSTONE_MS = 86400000

-- A recorded job whose record Redis dropped: buried (RecordMissing), out of the indexes
-- `ctx` names (waiting, active), and a `failed` tombstone record kept a day, which tells
-- whoever looks the job up, and the other paths that meet the job (its entry read or
-- reclaimed, its waiting id walked), that it is buried already.
local function bury_missing(ctx, laneKey, laneIndex, entryId, jobId, createdAt, now)
  bury(ctx, laneKey, entryId, jobId, { name = '', lane = LANE_NAMES[laneIndex] or '', data = 'null',
    attempts = 0, stalls = 0, createdAt = createdAt }, RECORD_MISSING, 'RecordMissing', now)
  if ctx.waiting then redis.call('ZREM', ctx.waiting, jobId) end
  if ctx.active then redis.call('ZREM', ctx.active, jobId) end
  local job = ctx.jobPrefix .. jobId
  redis.call('HSET', job, 'id', jobId, 'queue', ctx.queue, 'state', 'failed', 'failedReason', RECORD_MISSING,
    'errorType', 'RecordMissing', 'finishedAt', now)
  redis.call('PEXPIRE', job, TOMBSTONE_MS)
end

-- Final failure of a recorded job: buried with its record's data, and the record
-- becomes `failed`. `job` is the job's key.
local function dead_letter(ctx, job, jobId, laneKey, entryId, inflightField, reason, errorType, now)
  local rec = redis.call('HMGET', job, 'data', 'attemptsMade', 'stalls', 'createdAt', 'name', 'lane')
  bury(ctx, laneKey, entryId, jobId, { name = rec[5] or '', lane = rec[6] or '', data = rec[1] or 'null',
    attempts = rec[2] or '0', stalls = rec[3] or '0', createdAt = rec[4] or '' }, reason, errorType, now)
  redis.call('HDEL', ctx.inflight, inflightField)
  redis.call('HSET', job, 'state', 'failed', 'failedReason', reason, 'finishedAt', now)
  redis.call('ZREM', ctx.active, jobId)
  redis.call('ZREM', ctx.retrying, jobId)
  redis.call('ZADD', ctx.failed, now, jobId)
  enforce_retention(ctx.failed, ctx.keepFailed, ctx.jobPrefix, ctx.logsPrefix)
end

-- The outcome run `run` recorded on a job, from the job's 'settled' field
-- ("<run token>:<outcome>"), or nil when that run recorded none: a call re-sent after a
-- lost reply answers with it and changes nothing.
local function settled_by(job, run)
  local settled = redis.call('HGET', job, 'settled')
  if settled and string.sub(settled, 1, #run + 1) == run .. ':' then return string.sub(settled, #run + 2) end
  return nil
end

-- Fencing: XACK takes no consumer, so before recording an outcome we check the entry
-- is still pending to this consumer with the delivery count the run started with.
local function owns(laneKey, group, entryId, consumer, delivery)
  local p = redis.call('XPENDING', laneKey, group, entryId, entryId, 1, consumer)
  return p[1] ~= nil and tonumber(p[1][4]) == tonumber(delivery)
end

-- Final failure of a stream-kept job (no record): buried with the entry's own data,
-- and kept among the failed jobs (the newest `keepFailed`, where the job can still be
-- looked up by id); its retry state goes.
local function dead_letter_entry(ctx, laneKey, laneName, entryId, field, jobId, data, reason,
                                 errorType, attempts, stalls, now)
  data = checked_data(data)  -- a reader must be able to decode the letter
  bury(ctx, laneKey, entryId, jobId, { name = ctx.queue, lane = laneName, data = data or 'null',
    attempts = attempts, stalls = stalls, createdAt = string.match(entryId, '^(%d+)') }, reason, errorType, now)
  if ctx.keepFailed > 0 then
    redis.call('XADD', ctx.keptFailed, 'MAXLEN', ctx.keepFailed, '*',
      'id', jobId, 'lane', laneName, 'data', data or 'null', 'failedReason', reason,
      'errorType', errorType, 'attemptsMade', attempts, 'stalls', stalls)
  end
  redis.call('HDEL', ctx.failures, field)
end

-- A stream entry id as two numbers, for ordering ids of any stream.
local function entry_order(id)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  return tonumber(ms), tonumber(seq)
end

-- The retry state of a stream-kept entry from the failures hash: state, failed
-- attempts, backoff ms ('active', 0, 0 for an entry that never failed).
local function entry_mark(failuresKey, field)
  local mark = redis.call('HGET', failuresKey, field)
  if not mark then return 'active', 0, 0 end
  local s, a, b = string.match(mark, '^(%a+):(%d+):(%d+)$')
  return s, tonumber(a), tonumber(b)
end

-- The entry of `fields` (a flat field list) named `name`, or nil.
local function field_of(fields, name)
  for i = 1, #fields, 2 do
    if fields[i] == name then return fields[i + 1] end
  end
  return nil
end

-- The newest entry of a kept-outcomes stream whose 'id' field is `jobId`: its entry
-- id and fields, or nil. The stream is capped by retention, so the scan is bounded.
local function find_kept(key, jobId)
  for _, e in ipairs(redis.call('XREVRANGE', key, '+', '-')) do
    if field_of(e[2], 'id') == jobId then return e[1], e[2] end
  end
  return nil
end

-- The id of the last entry `group` read from a stream, or nil when the stream has no
-- such group yet (nothing of it is read, nothing pending).
local function last_read(laneKey, group)
  for _, g in ipairs(redis.call('XINFO', 'GROUPS', laneKey)) do
    local info = {}
    for i = 1, #g, 2 do info[g[i]] = g[i + 1] end
    if info['name'] == group then return info['last-delivered-id'] end
  end
  return nil
end

-- Whether entry id `a` comes after entry id `b`.
local function after(a, b)
  local aMs, aSeq = entry_order(a)
  local bMs, bSeq = entry_order(b)
  return aMs > bMs or (aMs == bMs and aSeq > bSeq)
end

-- The 'data' field of an entry's field list, or nil.
local function entry_data(fields)
  return field_of(fields, 'data')
end

-- An entry's W3C traceparent field, or false when it has none or not one of that form
-- (a raw XADD may carry anything there; only a well-formed one reaches the client).
local function entry_traceparent(fields)
  local value = field_of(fields, 'traceparent')
  if value and string.match(value, '^%x%x%-%x+%-%x+%-%x%x$') then return value end
  return false
end
