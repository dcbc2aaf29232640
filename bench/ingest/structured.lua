-- One CloudEvent per request, HTTP structured content mode (JSON event format).
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
  local body = '{"specversion":"1.0","type":"user.created","source":"/bench/users","id":"' .. prefix .. "-" .. counter ..
    '","subject":"' .. counter .. '","time":"2026-11-27T10:00:00.123456Z","datacontenttype":"application/json",' ..
    '"data":{"id":"' .. counter .. '","name":"Ozzy Osbourne"}}'
  return wrk.format("POST", "/", {["content-type"] = "application/cloudevents+json"}, body)
end
