-- One CloudEvent per request, HTTP binary content mode, a unique ce-id each time.
local counter = 0
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end
function init(args)
  prefix = tostring(tid) .. "-" .. tostring(os.time()) .. "-" .. tostring(math.random(1000000))
end
function request()
  counter = counter + 1
  local headers = {
    ["content-type"] = "application/json",
    ["ce-specversion"] = "1.0",
    ["ce-type"] = "user.created",
    ["ce-source"] = "/bench/users",
    ["ce-id"] = prefix .. "-" .. counter,
    ["ce-subject"] = tostring(counter),
    ["ce-time"] = "2026-11-27T10:00:00.123456Z",
  }
  return wrk.format("POST", "/", headers, '{"id":"' .. counter .. '","name":"Ozzy Osbourne"}')
end
