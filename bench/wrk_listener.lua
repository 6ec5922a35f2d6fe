-- A listener page's steady-state requests, for wrk: the segment being produced, streamed while
-- the origin writes its parts, then at once the next one (held by the server until its first
-- part), and the Space's snapshot every 15 s. The bulk of a big bench audience runs here, in C,
-- at a fraction of a Python listener's CPU (bench/bulk.py measures the sampled listeners' lateness).
--
-- wrk gives a script no connection identity, so the live edge is kept per thread: every
-- connection of a thread asks for the same segment, and the first completion of a segment newer
-- than any before moves the edge on. A segment is known by its first fragment's decode time (the
-- `tfdt` box): completions of the same segment, however spread out (a server past its pace
-- spreads them over seconds), move it once, and a laggard's older segment never.
--
-- Arguments: segment-path-prefix msn snapshot-path snapshot-seconds connections counters-file
-- The counters file is rewritten (via a rename) at most four times a second, at an answer:
--   segments other-answers snapshots requests edge refused
-- (refused: the 503/429 among the other answers)
-- (a segment's completions after the one that moved the edge may be published later than the
-- edge: bulk.py does not expect the newest segment's).
local ffi = require("ffi")
ffi.cdef [[
typedef struct { long tv_sec; long tv_nsec; } th_timespec;
int clock_gettime(int clock, th_timespec *tp);
]]
local MONOTONIC = 1
local clock = ffi.new("th_timespec")

local function now()
  ffi.C.clock_gettime(MONOTONIC, clock)
  return tonumber(clock.tv_sec) + tonumber(clock.tv_nsec) * 1e-9
end

local prefix, edge, snapshot_path, snapshot_every, counters
local newest = -1 -- the decode time of the newest segment completed
local next_snapshot = 0
local written_at = 0
local segments, other, snapshots, requests, refused = 0, 0, 0, 0, 0

local function publish(t)
  if t - written_at < 0.25 then
    return
  end
  written_at = t
  local tmp = counters .. ".tmp"
  local file = io.open(tmp, "w")
  if file then
    file:write(string.format("%d %d %d %d %d %d\n", segments, other, snapshots, requests, edge, refused))
    file:close()
    os.rename(tmp, counters)
  end
end

function init(args)
  prefix, edge = args[1], tonumber(args[2])
  snapshot_path = args[3]
  -- One snapshot every `snapshot-seconds` per connection, spread evenly over the thread.
  snapshot_every = tonumber(args[4]) / tonumber(args[5])
  counters = args[6]
  next_snapshot = now() -- evenly spread from the start: the steady state, with no join burst
end

function request()
  requests = requests + 1
  local t = now()
  if t >= next_snapshot then
    next_snapshot = next_snapshot + snapshot_every
    return wrk.format("GET", snapshot_path)
  end
  return wrk.format("GET", prefix .. "s" .. edge .. ".m4s")
end

-- The base media decode time of the first fragment in `body` (its first `tfdt` box), or nil.
local function decode_time(body)
  local at = body:find("tfdt", 1, true)
  if at == nil then
    return nil
  end
  local first, last = at + 8, at + 11 -- version 0: 32 bits
  if body:byte(at + 4) == 1 then
    last = at + 15 -- version 1: 64 bits
  end
  if #body < last then
    return nil
  end
  local time = 0
  for i = first, last do
    time = time * 256 + body:byte(i)
  end
  return time
end

function response(status, headers, body)
  local t = now()
  local kind = headers["content-type"] or headers["Content-Type"] or ""
  if status == 200 and kind:find("json", 1, true) then
    snapshots = snapshots + 1
  elseif status == 200 then
    segments = segments + 1
    local time = decode_time(body)
    if time ~= nil and time > newest then
      edge = edge + 1
      newest = time
    end
  else
    other = other + 1
    if status == 503 or status == 429 then
      refused = refused + 1
    end
  end
  publish(t)
end
