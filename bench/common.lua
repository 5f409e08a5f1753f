-- Shared by every workload script: its arguments, the headers, the pool of item ids, unique
-- names, and the one result line bench/wrk.py parses. Arguments, after wrk's "--":
--   1: the API key (the echo app ignores it), 2: a file of pool entries (item ids, or list
--   cursors), one a line, 3: a run tag that makes this run's created names unique.
local common = {}

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
    math.randomseed(os.time() * 1000 + thread_number)
end

function common.pick()
    return common.pool[math.random(#common.pool)]
end

function common.get(path)
    return wrk.format("GET", path, common.read_headers)
end

function common.post(path, body)
    return wrk.format("POST", path, common.write_headers, body)
end

-- A create whose name no other request of this run sends.
function common.create()
    common.counter = common.counter + 1
    local body = string.format('{"name":"bench-%s-%d","qty":1}', common.tag, common.counter)
    return common.post("/items", body)
end

function common.adjust(item_id)
    return common.post("/items/" .. item_id .. "/adjustments", '{"delta":1}')
end

function common.done(summary, latency, requests)
    local e = summary.errors
    io.write(string.format(
        'BENCH_RESULT {"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, '
            .. '"max_us": %d, "status_errors": %d, "socket_errors": %d}\n',
        summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
        latency.max, e.status, e.connect + e.read + e.write + e.timeout
    ))
end

return common
