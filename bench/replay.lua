-- replay: POST /items/{id}/adjustments {"delta":1} with Idempotency-Key "replay-{id}", taking the
-- pool's items in turn. bench/preload.py sent each of these once before the runs, so every
-- request here is a retry: answered from the stored answer, changing nothing. In turn rather
-- than at random so that no two requests in flight carry one key (the pool holds more items
-- than there are connections): on PostgreSQL a retry that meets another retry of its key,
-- still holding the key's lock, is answered 409 idempotency-in-flight.
package.path = (debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "?.lua;" .. package.path
local common = require("common")
setup, done = common.setup, common.done

local turn

function init(args)
    common.init(args)
    turn = math.random(#common.pool)
end

function request()
    turn = turn % #common.pool + 1
    local item_id = common.pool[turn]
    local path = "/items/" .. item_id .. "/adjustments"
    return common.keyed_post(path, '{"delta":1}', "replay-" .. item_id)
end
