-- PATCH /v1/users/{id} with a new name (no password: no hashing), cycling through the ids in USER_IDS.
-- Each answered request is one committed change and one pending outbox event.
local ids = {}
local i = 0
local headers = { ["Content-Type"] = "application/json" }

function init(args)
  for line in io.lines(os.getenv("USER_IDS")) do
    ids[#ids + 1] = line
  end
end

function request()
  i = i + 1
  return wrk.format("PATCH", "/v1/users/" .. ids[(i % #ids) + 1], headers, '{"name": "Renamed ' .. i .. '"}')
end
