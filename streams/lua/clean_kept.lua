--[[
  Stream-kept jobs: deletes kept outcomes (completions or failures) that were recorded
  more than `grace` ms ago, oldest first, at most `limit` of them.

  KEYS[1] kept completions or kept failures stream
  ARGV[1] grace ms   ARGV[2] limit
  Returns the job ids removed.
]]
--!include _common.lua

local cutoff = now_ms() - tonumber(ARGV[1])
local old = redis.call('XRANGE', KEYS[1], '-', cutoff, 'COUNT', tonumber(ARGV[2]))
local entryIds, jobIds = {}, {}
for _, e in ipairs(old) do
  entryIds[#entryIds + 1] = e[1]
  jobIds[#jobIds + 1] = field_of(e[2], 'id') or ''
end
call_many('XDEL', KEYS[1], entryIds)
return jobIds
