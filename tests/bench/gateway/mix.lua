-- mix.lua — DeathStarBench's social-network mix for wrk: 60% home
-- timeline (GET /v1/feed), 30% user timeline (GET /v1/users/{u}/posts),
-- 10% compose (POST /v1/posts), each as a random loaded user.
-- FLOCK_BENCH_USERS names the file setup.py wrote. FLOCK_BENCH_ROUTE
-- (feed, user or compose) sends that route alone, to measure its share.
local users = {}
local only = os.getenv("FLOCK_BENCH_ROUTE")

local function load()
  local path = os.getenv("FLOCK_BENCH_USERS")
  for line in io.lines(path) do
    local name, id, token, media = line:match("(%S+) (%S+) (%S+) (%S+)")
    if name then
      users[#users + 1] = {name = name, token = token, media = media}
    end
  end
end

function init(args)
  load()
  math.randomseed(os.time() + math.floor(os.clock() * 1000000))
end

local n = 0
function request()
  n = n + 1
  local u = users[math.random(#users)]
  local headers = {["Authorization"] = "Bearer " .. u.token}
  local r = math.random(100)
  if only == "feed" then r = 1 elseif only == "user" then r = 61
  elseif only == "compose" then r = 91 end
  if r <= 60 then
    return wrk.format("GET", "/v1/feed?limit=10", headers)
  elseif r <= 90 then
    local other = users[math.random(#users)]
    return wrk.format("GET", "/v1/users/" .. other.name .. "/posts?limit=10", headers)
  else
    headers["Content-Type"] = "application/json"
    local body = '{"caption":"compose ' .. n .. ' #bench","media_id":"' .. u.media .. '"}'
    return wrk.format("POST", "/v1/posts", headers, body)
  end
end

local errors = 0
function response(status, headers, body)
  if status >= 400 then errors = errors + 1 end
end

function done(summary, latency, requests)
  io.write(string.format("mix_errors %d\n", summary.errors.status))
end
