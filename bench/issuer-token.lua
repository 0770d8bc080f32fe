-- bench/issuer-token.lua — wrk script for bench/issuer.sh: POST a token request.
--
--   wrk -t1 -c32 -d10s --latency -s bench/issuer-token.lua URL -- 'FORM_BODY'
--
-- Sends POST URL with content-type application/x-www-form-urlencoded and the
-- body given after `--` (already form-encoded). Counts every response by status
-- and counts 2xx responses whose body has no "access_token", then prints ONE
-- line at the end that bench/issuer.sh parses:
--
--   issuer-lua: responses=N non2xx=N no_token=N statuses=200:N,401:N
--
-- (wrk's own "Non-2xx or 3xx responses" line treats 3xx as success; this does not.)

local threads = {}

function setup(thread)
   table.insert(threads, thread)
end

function init(args)
   local body = args[1]
   if body == nil or body == "" then
      io.stderr:write("issuer-token.lua: pass the form body after `--`\n")
      os.exit(2)
   end
   wrk.method = "POST"
   wrk.body = body
   wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
   responses = 0
   non2xx = 0
   no_token = 0
   statuses = {}
end

function response(status, headers, body)
   responses = responses + 1
   statuses[status] = (statuses[status] or 0) + 1
   if status < 200 or status > 299 then
      non2xx = non2xx + 1
   elseif body == nil or not string.find(body, '"access_token"', 1, true) then
      no_token = no_token + 1
   end
end

function done(summary, latency, requests)
   local r, n, t = 0, 0, 0
   local st = {}
   for _, thread in ipairs(threads) do
      r = r + thread:get("responses")
      n = n + thread:get("non2xx")
      t = t + thread:get("no_token")
      -- thread:get copies tables shallowly; merge the per-status counts.
      local s = thread:get("statuses")
      for code, count in pairs(s) do
         st[code] = (st[code] or 0) + count
      end
   end
   local codes = {}
   for code in pairs(st) do table.insert(codes, code) end
   table.sort(codes)
   local parts = {}
   for _, code in ipairs(codes) do table.insert(parts, code .. ":" .. st[code]) end
   io.write(string.format("issuer-lua: responses=%d non2xx=%d no_token=%d statuses=%s\n",
      r, n, t, table.concat(parts, ",")))
end
