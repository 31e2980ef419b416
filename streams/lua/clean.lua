--[[
  Deletes finished job records (completed or failed) that finished more than `grace`
  ms ago, oldest first, at most `limit` of them.

  KEYS[1] state index (completed or failed)  KEYS[2] job key prefix  KEYS[3] logs key prefix
  ARGV[1] grace ms  ARGV[2] limit
  Returns the ids removed.
]]
--!include _common.lua

local cutoff = now_ms() - tonumber(ARGV[1])
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', cutoff, 'LIMIT', 0, tonumber(ARGV[2]))
for _, id in ipairs(ids) do
  redis.call('DEL', KEYS[2] .. id, KEYS[3] .. id)
  redis.call('ZREM', KEYS[1], id)
end
return ids
