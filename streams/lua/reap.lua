--[[
  Removes consumers that hold no pending entries and have been idle longer than
  `idle` ms (workers that exited). XGROUP DELCONSUMER would drop a consumer's pending
  entries for good, so a consumer holding any is never removed.

  KEYS[1] lane stream   ARGV[1] group   ARGV[2] idle ms
  Returns the names removed.
]]

local removed = {}
if redis.call('EXISTS', KEYS[1]) == 0 then return removed end
for _, c in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])) do
  local info = {}
  for i = 1, #c, 2 do info[c[i]] = c[i + 1] end
  if tonumber(info['pending']) == 0 and tonumber(info['idle']) > tonumber(ARGV[2]) then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], info['name'])
    removed[#removed + 1] = info['name']
  end
end
return removed
