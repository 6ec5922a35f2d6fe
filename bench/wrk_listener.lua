-- A listener page's steady-state requests, for wrk: the segment being produced, streamed while
-- the origin writes its parts, then at once the next one (held by the server until its first
-- part), and the Space's snapshot every 15 s. The bulk of a big bench audience runs here, in C,
-- at a fraction of a Python listener's CPU (bench/bulk.py measures the sampled listeners' lateness).
--
-- wrk gives a script no connection identity, so the live edge is kept per thread: every
-- connection of a thread asks for the same segment, and the first completed segment in a burst
-- moves the edge on; completions within half a segment of that move belong to the same segment.
--
-- Arguments: segment-path-prefix msn segment-seconds snapshot-path snapshot-seconds connections
--            counters-file
-- The counters file is rewritten (via a rename) at most four times a second, at an answer:
--   segments other-answers snapshots requests edge refused
-- (refused: the 503/429 among the other answers)
-- (a burst of completions is published at its first answer, together with the edge it moved).
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

local prefix, edge, segment_s, snapshot_path, snapshot_every, counters
local moved_at = -math.huge
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
  prefix, edge, segment_s = args[1], tonumber(args[2]), tonumber(args[3])
  snapshot_path = args[4]
  -- One snapshot every `snapshot-seconds` per connection, spread evenly over the thread.
  snapshot_every = tonumber(args[5]) / tonumber(args[6])
  counters = args[7]
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

function response(status, headers, body)
  local t = now()
  local kind = headers["content-type"] or headers["Content-Type"] or ""
  if status == 200 and kind:find("json", 1, true) then
    snapshots = snapshots + 1
  elseif status == 200 then
    segments = segments + 1
    if t - moved_at > segment_s / 2 then
      edge = edge + 1
      moved_at = t
    end
  else
    other = other + 1
    if status == 503 or status == 429 then
      refused = refused + 1
    end
  end
  publish(t)
end
