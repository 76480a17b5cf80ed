-- wrk script for benches/bench_gateway.py: POST the body in $BODY_FILE as application/json.
local path = os.getenv("BODY_FILE")
local f = assert(io.open(path, "rb"))
local body = f:read("*a")
f:close()
wrk.method = "POST"
wrk.body = body
wrk.headers["Content-Type"] = "application/json"
