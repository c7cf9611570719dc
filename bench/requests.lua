-- wrk script for the HTTP benchmarks (bench/wrk.py): replays a pre-generated request list.
-- Usage: wrk -t N -s bench/requests.lua URL -- REQUEST_FILE N
-- Each line of REQUEST_FILE is "METHOD\tPATH\tHEADERS\tBODY": headers as "Name: value" joined by
-- "\x1f". Thread i of n takes lines i, i+n, i+2n, ... so threads never send the same request; a thread that
-- reaches the end of its share starts over and counts every request sent after that in `wrapped` (a replay is
-- not a fresh request, so the caller treats any as an error). Non-2xx responses are counted per status; done() prints one JSON line.

local threads = {}

function setup(thread)
   thread:set("tid", #threads)
   table.insert(threads, thread)
end

local function split(s, sep)
   local out, start = {}, 1
   while true do
      local i = string.find(s, sep, start, true)
      if not i then
         table.insert(out, string.sub(s, start))
         return out
      end
      table.insert(out, string.sub(s, start, i - 1))
      start = i + #sep
   end
end

function init(args)
   local nthreads = tonumber(args[2])  -- setup() has numbered this thread (tid) before init runs
   reqs, idx, wrapped, looped, non2xx, first_error = {}, 0, 0, false, 0, ""
   statuses = {}
   local n = 0
   for line in io.lines(args[1]) do
      if n % nthreads == tid then
         local f = split(line, "\t")
         local headers = {}
         if f[3] ~= "" then
            for _, h in ipairs(split(f[3], "\31")) do
               local colon = string.find(h, ":", 1, true)
               headers[string.sub(h, 1, colon - 1)] = string.sub(h, colon + 2)
            end
         end
         table.insert(reqs, wrk.format(f[1], f[2], headers, f[4] ~= "" and f[4] or nil))
      end
      n = n + 1
   end
end

function request()
   idx = idx + 1
   if idx > #reqs then
      idx, looped = 1, true
   end
   if looped then
      wrapped = wrapped + 1
   end
   return reqs[idx]
end

function response(status, headers, body)
   if status < 200 or status > 299 then
      non2xx = non2xx + 1
      statuses[status] = (statuses[status] or 0) + 1
      if first_error == "" then
         first_error = status .. " " .. string.sub(body or "", 1, 200)
      end
   end
end

local function jstr(s)
   return '"' .. string.gsub(s, '[%c"\\]', function(c) return string.format("\\u%04x", string.byte(c)) end) .. '"'
end

function done(summary, latency, requests)
   local non2xx_total, wrapped_total, first, by_status = 0, 0, "", {}
   for _, t in ipairs(threads) do
      non2xx_total = non2xx_total + t:get("non2xx")
      wrapped_total = wrapped_total + t:get("wrapped")
      if first == "" then first = t:get("first_error") end
      for code, count in pairs(t:get("statuses")) do
         by_status[code] = (by_status[code] or 0) + count
      end
   end
   local codes = {}
   for code, count in pairs(by_status) do
      table.insert(codes, '"' .. code .. '": ' .. count)
   end
   local e = summary.errors
   io.write("WRK_JSON " .. string.format(
      '{"requests": %d, "duration_us": %d, "bytes": %d, "non2xx": %d, "wrapped": %d, ' ..
      '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, ' ..
      '"latency_us": {"mean": %.1f, "max": %d, "p50": %d, "p90": %d, "p95": %d, "p99": %d}, ' ..
      '"non2xx_by_status": {%s}, "first_error": %s}',
      summary.requests, summary.duration, summary.bytes, non2xx_total, wrapped_total,
      e.connect, e.read, e.write, e.status, e.timeout,
      latency.mean, latency.max, latency:percentile(50), latency:percentile(90), latency:percentile(95),
      latency:percentile(99), table.concat(codes, ", "), jstr(first)) .. "\n")
end
