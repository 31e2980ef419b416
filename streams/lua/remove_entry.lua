--[[
  Stream-kept jobs: removes one job in any state but active (a running job is left to
  finish: removing it would race its worker). A kept completion or failure is deleted
  from its stream; a waiting entry is deleted; a delayed (backing-off) entry is acked,
  deleted and its retry state cleared.

  KEYS[1..3] lane streams high, normal, low
  KEYS[4] failures hash   KEYS[5] kept completions   KEYS[6] kept failures
  KEYS[7] events stream

  ARGV[1] group   ARGV[2] entry id   ARGV[3] job id   ARGV[4] events cap

  Returns 1 removed, 0 no such job, -1 the job is active.
]]
--!include _common.lua

local group, entryId, jobId, eventsMaxLen = ARGV[1], ARGV[2], ARGV[3], ARGV[4]

local function removed()
  emit(KEYS[7], eventsMaxLen, 'removed', jobId)
  return 1
end

for _, key in ipairs({ KEYS[5], KEYS[6] }) do
  local keptId = find_kept(key, jobId)
  if keptId then
    redis.call('XDEL', key, keptId)
    return removed()
  end
end

for lane = 1, 3 do
  if redis.call('XRANGE', KEYS[lane], entryId, entryId)[1] then
    local field = lane .. ':' .. entryId
    local last = last_read(KEYS[lane], group)
    if last and redis.call('XPENDING', KEYS[lane], group, entryId, entryId, 1)[1] then
      if entry_mark(KEYS[4], field) ~= 'delayed' then return -1 end
      redis.call('XACK', KEYS[lane], group, entryId)
      redis.call('HDEL', KEYS[4], field)
      redis.call('XDEL', KEYS[lane], entryId)
      return removed()
    end
    -- Read and acked: finished, and no longer kept.
    if last and not after(entryId, last) then return 0 end
    redis.call('XDEL', KEYS[lane], entryId)
    return removed()
  end
end
return 0
