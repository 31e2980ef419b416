--[[
  Trims a lane stream without losing work: XTRIM MINID to the smallest id that any
  consumer group still needs (its oldest pending entry, or the entry after its last
  delivered one). A stream no group reads yet is left alone. Redis 7.0's own MAXLEN and
  MINID ignore groups, hence this script.

  KEYS[1] lane stream
  Returns the number of entries removed.
]]

local function parse(id)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  return tonumber(ms), tonumber(seq)
end

local function less(aMs, aSeq, bMs, bSeq)
  return aMs < bMs or (aMs == bMs and aSeq < bSeq)
end

if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local groups = redis.call('XINFO', 'GROUPS', KEYS[1])
if #groups == 0 then return 0 end

local minMs, minSeq = nil, nil
for _, g in ipairs(groups) do
  local info = {}
  for i = 1, #g, 2 do info[g[i]] = g[i + 1] end
  local ms, seq
  local pending = redis.call('XPENDING', KEYS[1], info['name'])
  if tonumber(pending[1]) > 0 then
    ms, seq = parse(pending[2])
  else
    ms, seq = parse(info['last-delivered-id'])
    seq = seq + 1
  end
  if minMs == nil or less(ms, seq, minMs, minSeq) then minMs, minSeq = ms, seq end
end
return redis.call('XTRIM', KEYS[1], 'MINID', string.format('%.0f-%.0f', minMs, minSeq))
