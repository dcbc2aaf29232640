-- GET /v1/users/{id}, cycling through the ids in the file named by the environment variable USER_IDS.
local ids = {}
local i = 0

function init(args)
  for line in io.lines(os.getenv("USER_IDS")) do
    ids[#ids + 1] = line
  end
end

function request()
  i = i + 1
  return wrk.format("GET", "/v1/users/" .. ids[(i % #ids) + 1])
end
