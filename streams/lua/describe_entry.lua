--[[
  Stream-kept jobs: one job, found by its entry, as the fields a job record would hold
  (id, lane, state, data, attemptsMade, stalls, times, returnvalue, failedReason...).
  Where it is, newest knowledge first:
    kept completions -> completed     kept failures -> failed
    pending, failed before and backing off -> delayed (dueAt from its idle time)
    pending otherwise -> active       unread by the group -> waiting
  Read and acked but no longer kept (retention, clean or removal dropped it): not found.

  KEYS[1..3] lane streams high, normal, low
  KEYS[4] failures hash   KEYS[5] kept completions   KEYS[6] kept failures   KEYS[7] meta hash

  ARGV[1] group   ARGV[2] entry id   ARGV[3] job id

  Returns {paused ('1' or '0'), {field, value, ...}}, or {paused, false} when not found.
]]
--!include _common.lua

local group, entryId, jobId = ARGV[1], ARGV[2], ARGV[3]
local paused = redis.call('HGET', KEYS[7], 'paused') == '1' and '1' or '0'
local createdAt = string.match(entryId, '^(%d+)')

local function found(fields, ...)
  local record = { 'id', jobId, 'createdAt', createdAt, ... }
  for i = 1, #fields, 2 do
    if fields[i] ~= 'id' then
      record[#record + 1] = fields[i]
      record[#record + 1] = fields[i + 1]
    end
  end
  return { paused, record }
end

for _, kept in ipairs({ { 'completed', KEYS[5] }, { 'failed', KEYS[6] } }) do
  local state, keptId, fields = kept[1], find_kept(kept[2], jobId)
  if keptId then
    return found(fields, 'state', state, 'finishedAt', string.match(keptId, '^(%d+)'))
  end
end

local now = now_ms()
for lane = 1, 3 do
  local entry = redis.call('XRANGE', KEYS[lane], entryId, entryId)[1]
  if entry then
    local data = { 'lane', LANE_NAMES[lane], 'data', entry_data(entry[2]) or 'null' }
    local last = last_read(KEYS[lane], group)
    local p = last and redis.call('XPENDING', KEYS[lane], group, entryId, entryId, 1)[1]
    if p then
      local state, attempts, backoff = entry_mark(KEYS[4], lane .. ':' .. entryId)
      local idle, deliveries = tonumber(p[3]), tonumber(p[4])
      local stalls = math.max(deliveries - 1 - attempts, 0)
      if state == 'delayed' then
        return found(data, 'state', 'delayed', 'attemptsMade', attempts, 'stalls', stalls,
          'dueAt', now - idle + backoff)
      end
      return found(data, 'state', 'active', 'attemptsMade', attempts, 'stalls', stalls)
    end
    if last and not after(entryId, last) then return { paused, false } end  -- read and acked
    return found(data, 'state', 'waiting', 'attemptsMade', 0)
  end
end
return { paused, false }
