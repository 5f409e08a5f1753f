-- batch: POST /batch with 10 adjust operations, each on an item picked at random from the pool
-- (seeded with qty 1,000,000) with delta +1 or -1 at random, so quantities stay in range.
package.path = (debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "?.lua;" .. package.path
local common = require("common")
setup, init, done = common.setup, common.init, common.done

local size = 10
common.operations_per_request = size

function request()
    local operations = {}
    for i = 1, size do
        operations[i] = string.format(
            '{"op":"adjust","item_id":"%s","delta":%d}', common.pick(), math.random(0, 1) * 2 - 1
        )
    end
    return common.post("/batch", '{"operations":[' .. table.concat(operations, ",") .. "]}")
end
