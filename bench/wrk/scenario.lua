-- One wrk script for every benchmark scenario.
--
--   wrk ... -s bench/wrk/scenario.lua URL -- MODE IDS_FILE TAG AUTH TOKEN_ON PASSWORD
--
-- MODE      get | list | patch | post_user | token | argon2 (post_user and token, alternating)
-- IDS_FILE  one seeded user id per line (random ids for get/patch; seed_NNNNN logins)
-- TAG       unique per run: keeps POSTed emails and usernames unique across runs
-- AUTH      the whole Authorization header value, or "-" for none
-- TOKEN_ON  "1" when /auth/token exists (argon2 mode then alternates), else "0"
-- PASSWORD  the seeded users' password (for token)
--
-- `done` prints one line starting with BENCH_JSON that the harness parses.

local threads = {}
local next_tid = 0

function setup(thread)
  next_tid = next_tid + 1
  thread:set("tid", next_tid)
  table.insert(threads, thread)
end

local mode, tag, auth, token_on, password
local ids = {}
local n_ids = 0
local counter = 0
local json_headers = {}
local form_headers = {}
local get_headers = {}

function init(args)
  mode = args[1]
  local ids_file = args[2]
  tag = args[3]
  auth = args[4]
  token_on = args[5] == "1"
  password = args[6]
  for line in io.lines(ids_file) do
    if #line > 0 then
      n_ids = n_ids + 1
      ids[n_ids] = line
    end
  end
  math.randomseed(os.time() * 1000 + (tid or 0) * 7919)
  json_headers["Content-Type"] = "application/json"
  form_headers["Content-Type"] = "application/x-www-form-urlencoded"
  if auth ~= "-" then
    json_headers["Authorization"] = auth
    get_headers["Authorization"] = auth
    -- /auth/token takes no bearer token: a login is anonymous.
  end
end

local function random_id()
  return ids[math.random(n_ids)]
end

local function post_user()
  counter = counter + 1
  local name = string.format("p%s_%d_%d", tag, tid or 0, counter)
  local body = string.format(
    '{"email":"%s@bench.example","username":"%s","password":"Bench-Password-Long-42!"}',
    name, name)
  return wrk.format("POST", "/api/v1/users", json_headers, body)
end

local function token()
  -- seeded usernames are seed_00000 .. seed_NNNNN, in the same order as IDS_FILE
  local n = math.random(n_ids) - 1
  local body = string.format("username=seed_%05d&password=%s", n, password)
  return wrk.format("POST", "/api/v1/auth/token", form_headers, body)
end

function request()
  if mode == "get" then
    return wrk.format("GET", "/api/v1/users/" .. random_id(), get_headers)
  elseif mode == "list" then
    return wrk.format("GET", "/api/v1/users?limit=50", get_headers)
  elseif mode == "patch" then
    counter = counter + 1
    local body = string.format('{"full_name":"Bench %s %d %d"}', tag, tid or 0, counter)
    return wrk.format("PATCH", "/api/v1/users/" .. random_id(), json_headers, body)
  elseif mode == "post_user" then
    return post_user()
  elseif mode == "token" then
    return token()
  elseif mode == "argon2" then
    counter = counter + 1
    if token_on and counter % 2 == 0 then
      return token()
    end
    return post_user()
  end
  error("unknown mode " .. tostring(mode))
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,"connect":%d,"read":%d,' ..
    '"write":%d,"status":%d,"timeout":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,' ..
    '"max_us":%d,"mean_us":%.1f}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write,
    e.status, e.timeout, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, latency.mean))
end
