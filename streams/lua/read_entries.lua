--[[
  Stream-kept jobs, on a queue with a rate limit or lane weights: reads up to `want`
  entries with XREADGROUP, lane by lane (strict priority or the weighted share), after
  taking one rate-limit permit per entry read, in one step, as read.lua does for
  recorded jobs. (A queue with neither reads with a plain blocking XREADGROUP.)

  KEYS[1..3] lane streams high, normal, low
  KEYS[4] meta hash (paused flag, weighted-read counter)   KEYS[5] rate limiter (zset)

  ARGV[1] group   ARGV[2] consumer   ARGV[3] want (>= 1)
  ARGV[4] lane weights "h,n,l" or '' for strict priority
  ARGV[5] rate limit max (0 = none)   ARGV[6] rate window ms

  Returns one of
    {'entries', {lane index, entry id, data, traceparent or nil}...}
    {'paused'}
    {'limited', ms until a permit frees}
    {'empty', last id of each lane}
]]
--!include _common.lua

local meta, limiter = KEYS[4], KEYS[5]
local group, consumer, want = ARGV[1], ARGV[2], tonumber(ARGV[3])
local rateMax, rateWindow = tonumber(ARGV[5]), tonumber(ARGV[6])
local now = now_ms()

if redis.call('HGET', meta, 'paused') == '1' then return { 'paused' } end
local allowed, wait = free_permits(limiter, rateMax, rateWindow, want, now)
if allowed == 0 then return { 'limited', wait } end
local quota = lane_quotas(meta, ARGV[4], allowed)

local entries, permits = {}, {}
local function read_lane(lane, count)
  if count <= 0 then return 0 end
  local reply = redis.call('XREADGROUP', 'GROUP', group, consumer, 'COUNT', count, 'STREAMS', KEYS[lane], '>')
  if not reply then return 0 end
  for _, entry in ipairs(reply[1][2]) do
    entries[#entries + 1] = { lane, entry[1], entry_data(entry[2]), field_of(entry[2], 'traceparent') or false }
    permits[#permits + 1] = now
    permits[#permits + 1] = lane .. ':' .. entry[1]
  end
  return #reply[1][2]
end

local remaining = allowed
for lane = 1, 3 do
  remaining = remaining - read_lane(lane, math.min(quota[lane], remaining))
end
for lane = 1, 3 do  -- a share that found its lane empty goes to the others, highest first
  remaining = remaining - read_lane(lane, remaining)
end

if #entries > 0 then
  if rateMax > 0 then
    call_many('ZADD', limiter, permits)
    redis.call('PEXPIRE', limiter, rateWindow)
  end
  return { 'entries', entries }
end
return { 'empty', last_ids(KEYS) }
