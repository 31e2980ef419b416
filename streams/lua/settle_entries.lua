--[[
  Stream-kept jobs: records the success of a batch. Acks every entry, clears the retry
  state of those that had failed before, keeps the newest `keep` completions (the
  kept-completions stream, trimmed to `keep`, where a job is looked up by id), adds
  the entries acked now to the queue's completed total and emits one `completed`
  event. Sent again after a lost reply it changes nothing more: only entries this call
  acked are kept and counted.

  KEYS[1..3] lane streams high, normal, low
  KEYS[4] failures hash   KEYS[5] meta hash (the 'completed' total)
  KEYS[6] events stream   KEYS[7] kept completions stream

  ARGV[1] group   ARGV[2] completions kept   ARGV[3] events cap
  ARGV[4] JSON: the entry ids acked without keeping, one list per lane (high, normal, low)
  ARGV[5] JSON: failures-hash fields to clear ("<lane index>:<entry id>")
  ARGV[6] JSON: the completions to keep, oldest first, each a list of lane index,
          entry id, job id, data, return value (JSON text), attemptsMade, stalls, run ms

  Returns the number of entries acked by this call.
]]
--!include _common.lua

local group, keep, eventsMaxLen = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local byLane, cleared, kept = cjson.decode(ARGV[4]), cjson.decode(ARGV[5]), cjson.decode(ARGV[6])
local now = now_ms()
local acked = 0

for lane = 1, 3 do
  local ids = byLane[lane]
  for i = 1, #ids, 1000 do
    acked = acked + redis.call('XACK', KEYS[lane], group, unpack(ids, i, math.min(i + 999, #ids)))
  end
end
for _, row in ipairs(kept) do
  local lane, entryId, ran = row[1], row[2], row[8]
  -- Acked one by one: an entry acked already (a resent call) is not kept twice.
  if redis.call('XACK', KEYS[lane], group, entryId) == 1 then
    acked = acked + 1
    redis.call('XADD', KEYS[7], '*', 'id', row[3], 'lane', LANE_NAMES[lane], 'data', row[4],
      'returnvalue', row[5], 'attemptsMade', row[6], 'stalls', row[7],
      'processedAt', now - ran, 'duration', ran)
  end
end
if #kept > 0 then redis.call('XTRIM', KEYS[7], 'MAXLEN', keep) end
call_many('HDEL', KEYS[4], cleared)
if acked > 0 then
  redis.call('HINCRBY', KEYS[5], 'completed', acked)
  redis.call('XADD', KEYS[6], 'MAXLEN', '~', eventsMaxLen, '*', 'event', 'completed', 'job', '',
    'count', acked)
end
return acked
