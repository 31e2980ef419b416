--[[
  Stream-kept jobs: records the success of a batch. Acks every entry, clears the retry
  state of those that had failed before, keeps the newest `keep` completions (the
  kept-completions stream, trimmed to `keep`, where a job is looked up by id), adds
  the entries acked now to the queue's completed total and emits one `completed`
  event. Sent again after a lost reply it changes nothing more: only entries this call
  acked are counted, and the completions are kept only when this call acked the whole
  batch (one XACK per lane, not one per kept entry; an entry of a running batch is
  acked by nothing else, so a partial ack means a resent call).

  KEYS[1..3] lane streams high, normal, low
  KEYS[4] failures hash   KEYS[5] meta hash (the 'completed' total)
  KEYS[6] events stream   KEYS[7] kept completions stream

  ARGV[1] group   ARGV[2] completions kept   ARGV[3] events cap
  ARGV[4] JSON: the batch's entry ids, one list per lane (high, normal, low)
  ARGV[5] JSON: failures-hash fields to clear ("<lane index>:<entry id>")
  ARGV[6] JSON: the completions to keep (the batch's newest), oldest first, each a list
          of lane index, job id, data, return value (JSON text), attemptsMade, stalls, run ms

  Returns the number of entries acked by this call.
]]
--!include _common.lua

local group, keep, eventsMaxLen = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local byLane, cleared, kept = cjson.decode(ARGV[4]), cjson.decode(ARGV[5]), cjson.decode(ARGV[6])
local now = now_ms()
local acked, total = 0, 0

for lane = 1, 3 do
  local ids = byLane[lane]
  total = total + #ids
  for i = 1, #ids, 1000 do
    acked = acked + redis.call('XACK', KEYS[lane], group, unpack(ids, i, math.min(i + 999, #ids)))
  end
end
if acked < total then kept = {} end
for _, row in ipairs(kept) do
  local ran = row[7]
  redis.call('XADD', KEYS[7], '*', 'id', row[2], 'lane', LANE_NAMES[row[1]], 'data', row[3],
    'returnvalue', row[4], 'attemptsMade', row[5], 'stalls', row[6], 'processedAt', now - ran, 'duration', ran)
end
if #kept > 0 then redis.call('XTRIM', KEYS[7], 'MAXLEN', keep) end
call_many('HDEL', KEYS[4], cleared)
if acked > 0 then
  redis.call('HINCRBY', KEYS[5], 'completed', acked)
  redis.call('XADD', KEYS[6], 'MAXLEN', '~', eventsMaxLen, '*', 'event', 'completed', 'job', '',
    'count', acked)
end
return acked
