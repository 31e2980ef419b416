--[[
  Records a batch of one company's signals, each at most once: dedupe by signalId, the
  capped history, per-day counters and engaged contacts, the time-decayed intent score,
  and the trigger claims (intent crossing the threshold; a contact's Job Change), each
  at most once per cooldown. One script, so a signal's "seen" marker, its effects and
  its trigger claims are written together: a crash cannot leave one without the others.

  KEYS[1] history list            KEYS[2] intent hash (score, at)
  KEYS[3] engaged contacts zset   KEYS[4] research cooldown key
  KEYS[5] today's day hash (gets the score's snapshot)
  KEYS[6] the company's outbox stream (written only when ARGV[5] is not '')
  KEYS[7..] the signals' own keys, each named by its index from ARGV

  ARGV[1] the settings, one JSON array: intent half-life (ms), history cap, dedupe window
          (ms), intent threshold, research cooldown (ms), job-change cooldown (ms)
  ARGV[2] now (ms)                ARGV[3] expiry of today's day hash (epoch ms)
  ARGV[4] the signals as one JSON array (decoded with cjson; one argument instead of
          10 per signal, whose packing cost the client a third of its CPU), each an array:
          seen key index, day hash key index, day contacts key index (0: no contact),
          contact cooldown key index (0: not a Job Change with a contact),
          counter field, weight, event time (ms, as a string), day expiry (epoch ms, as a
          string), contact id ('' for none), history entry (JSON text)

  The writes of the recorded signals are gathered and sent once per key at the end
  (one LPUSH, one HINCRBY per day and type, one SADD and PEXPIREAT per day key, one
  ZADD): within one script nothing can tell the difference, and it halves the calls.
  With an outbox, the recorded signals' rows and the company's new intent score go into
  one outbox entry (rows: {"signals": [...], "companies": [...]}), so no recorded signal
  is without its row.

  Returns { score before the batch, { {duplicate 0|1, score after the signal, triggers}, ... } }
  Scores are strings (Lua numbers would reach the client truncated to integers).
  triggers: '' or a comma-separated list of 'research', 'enrichment'. A duplicate
  returns the triggers its first run claimed, so a caller that crashed before
  enqueueing them can enqueue them again (under the same idempotency keys).
]]
--!include _common.lua

local limits = cjson.decode(ARGV[1])
local halfLife, historyCap, dedupeMs = limits[1], limits[2], limits[3]
local threshold, researchCooldown, contactCooldown = limits[4], limits[5], limits[6]
local now, todayExpiry, rows = tonumber(ARGV[2]), ARGV[3], cjson.decode(ARGV[4])
local history, intent, engaged, researchClaim, today = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local outbox, companyId = KEYS[6], ARGV[5]

local function fmt(x) return string.format('%.17g', x) end

-- The weight of something that happened at `at`, as of `now`.
local function decayed(weight, at)
  if at >= now then return weight end
  return weight * 2 ^ (-(now - at) / halfLife)
end

local stored = redis.call('HMGET', intent, 'score', 'at')
local score, storedAt = tonumber(stored[1]) or 0, tonumber(stored[2]) or now
-- A worker whose clock is behind the last writer's must not move the score back in time.
if storedAt > now then now = storedAt end
score = decayed(score, storedAt)
local before = score
local results = {}
local entries, engagements, outboxRows = {}, {}, {}
local counts, members, expiries = {}, {}, {}  -- by KEYS index

for _, row in ipairs(rows) do
  local seen = KEYS[row[1]]
  if redis.call('SET', seen, '', 'NX', 'PX', dedupeMs) then
    local day, dayContacts, cooldownKey = row[2], row[3], row[4]
    local field, weight, at = row[5], row[6], tonumber(row[7])
    local dayExpiry, contact = row[8], row[9]

    entries[#entries + 1] = row[10]
    outboxRows[#outboxRows + 1] = row[11]
    local dayCounts = counts[day] or {}
    counts[day] = dayCounts
    dayCounts[field] = (dayCounts[field] or 0) + 1
    expiries[day] = dayExpiry
    if dayContacts > 0 then
      local dayMembers = members[dayContacts] or {}
      members[dayContacts] = dayMembers
      dayMembers[#dayMembers + 1] = contact
      expiries[dayContacts] = dayExpiry
      engagements[#engagements + 1] = row[7]
      engagements[#engagements + 1] = contact
    end

    local prior = score
    score = score + decayed(weight, at)
    local triggers = {}
    if prior < threshold and score >= threshold
        and redis.call('SET', researchClaim, '1', 'NX', 'PX', researchCooldown) then
      triggers[#triggers + 1] = 'research'
    end
    if cooldownKey > 0 and redis.call('SET', KEYS[cooldownKey], '1', 'NX', 'PX', contactCooldown) then
      triggers[#triggers + 1] = 'enrichment'
    end
    local claimed = table.concat(triggers, ',')
    if claimed ~= '' then redis.call('SET', seen, claimed, 'KEEPTTL') end
    results[#results + 1] = { 0, fmt(score), claimed }
  else
    results[#results + 1] = { 1, fmt(score), redis.call('GET', seen) or '' }
  end
end

if #entries > 0 then
  call_many('LPUSH', history, entries)
  redis.call('LTRIM', history, 0, historyCap - 1)
  for day, dayCounts in pairs(counts) do
    for field, n in pairs(dayCounts) do redis.call('HINCRBY', KEYS[day], field, n) end
  end
  for index, dayMembers in pairs(members) do call_many('SADD', KEYS[index], dayMembers) end
  for i = 1, #engagements, 1000 do  -- (time, contact) pairs; LT keeps the earliest engagement
    redis.call('ZADD', engaged, 'LT', unpack(engagements, i, math.min(i + 999, #engagements)))
  end
  redis.call('HSET', intent, 'score', fmt(score), 'at', now)
  redis.call('HSET', today, 'intent', fmt(score), 'intentAt', now)
  expiries[5] = todayExpiry  -- KEYS[5], today's hash, may also be a signal's day: today's expiry wins
  for index, expiry in pairs(expiries) do redis.call('PEXPIREAT', KEYS[index], expiry) end
  if companyId ~= '' then
    local company = cjson.encode({ id = companyId, intent_score = score, intent_at = now, updated_at = now })
    redis.call('XADD', outbox, '*', 'rows',
      '{"signals":[' .. table.concat(outboxRows, ',') .. '],"companies":[' .. company .. ']}')
  end
end
return { fmt(before), results }
