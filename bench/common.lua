-- Shared by every workload script: its arguments, the headers, the pool of item ids, unique
-- names, and the one result line bench/wrk.py parses. Arguments, after wrk's "--":
--   1: the API key (the echo app ignores it), 2: a file of pool entries (item ids, or list
--   cursors, feed positions), one a line, 3: a run tag that makes this run's created names and
--   idempotency keys unique.
local common = {}

-- How many operations one request carries (batch.lua sets it), for the operations/s figure.
common.operations_per_request = 1

local threads = 0

function common.setup(thread)
    threads = threads + 1
    thread:set("thread_number", threads)
end

function common.init(args)
    common.tag = args[3] .. "-" .. tostring(thread_number)
    common.counter = 0
    common.pool = {}
    for line in io.lines(args[2]) do
        if line ~= "" then
            common.pool[#common.pool + 1] = line
        end
    end
    common.read_headers = { ["Authorization"] = "Bearer " .. args[1] }
    common.write_headers = {
        ["Authorization"] = "Bearer " .. args[1],
        ["Content-Type"] = "application/json",
    }
    common.keyed_headers = {
        ["Authorization"] = "Bearer " .. args[1],
        ["Content-Type"] = "application/json",
    }
    math.randomseed(os.time() * 1000 + thread_number)
end

function common.pick()
    return common.pool[math.random(#common.pool)]
end

-- A write sent with an Idempotency-Key (a Structured Field string, as the IETF draft has it).
function common.keyed_post(path, body, key)
    common.keyed_headers["Idempotency-Key"] = '"' .. key .. '"'
    return wrk.format("POST", path, common.keyed_headers, body)
end

function common.get(path)
    return wrk.format("GET", path, common.read_headers)
end

function common.post(path, body)
    return wrk.format("POST", path, common.write_headers, body)
end

-- The body of a create whose name no other request of this run sends.
local function unique_item()
    common.counter = common.counter + 1
    return string.format('{"name":"bench-%s-%d","qty":1}', common.tag, common.counter)
end

function common.create()
    return common.post("/items", unique_item())
end

-- A create under an Idempotency-Key no other request of this run sends: a stored answer.
function common.keyed_create()
    local body = unique_item()
    local key = string.format("bench-%s-%d", common.tag, common.counter)
    return common.keyed_post("/items", body, key)
end

function common.adjust(item_id)
    return common.post("/items/" .. item_id .. "/adjustments", '{"delta":1}')
end

function common.done(summary, latency, requests)
    local e = summary.errors
    io.write(string.format(
        'BENCH_RESULT {"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, '
            .. '"max_us": %d, "status_errors": %d, "socket_errors": %d, '
            .. '"operations_per_request": %d}\n',
        summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
        latency.max, e.status, e.connect + e.read + e.write + e.timeout,
        common.operations_per_request
    ))
end

return common
