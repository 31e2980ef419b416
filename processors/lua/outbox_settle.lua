--[[
  Forgets the companies whose outbox the sink read to its end, unless a writer appended
  since: a company leaves the waiting set only when its counter still holds the value
  the sink read before draining. Writers bump the counter after each append, so an
  append the drain did not see always leaves its company waiting.

  KEYS[1] the waiting sorted set (company id -> counter)
  ARGV    pairs: company id, the counter the sink read (as ZRANGE WITHSCORES gave it)

  Returns how many companies were removed.
]]
local waiting = KEYS[1]
local removed = 0
for i = 1, #ARGV, 2 do
  local score = redis.call('ZSCORE', waiting, ARGV[i])
  if score and tonumber(score) == tonumber(ARGV[i + 1]) then
    removed = removed + redis.call('ZREM', waiting, ARGV[i])
  end
end
return removed
