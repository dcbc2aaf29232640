-- 100 CloudEvents per request, HTTP batched content mode (JSON batch format).
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
  local events = {}
  for i = 1, 100 do
    counter = counter + 1
    events[i] = '{"specversion":"1.0","type":"user.created","source":"/bench/users","id":"' .. prefix .. "-" ..
      counter .. '","subject":"' .. counter .. '","time":"2026-11-27T10:00:00.123456Z",' ..
      '"datacontenttype":"application/json","data":{"id":"' .. counter .. '","name":"Ozzy Osbourne"}}'
  end
  return wrk.format("POST", "/", {["content-type"] = "application/cloudevents-batch+json"},
    "[" .. table.concat(events, ",") .. "]")
end
