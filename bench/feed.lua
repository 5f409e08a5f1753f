-- feed: GET /events?after=N&limit=100, the tenant's change feed from a position picked at random
-- from the pool (bench/preload.py wrote positions with at least 100 events after each).
package.path = (debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "?.lua;" .. package.path
local common = require("common")
setup, init, done = common.setup, common.init, common.done

function request()
    return common.get("/events?after=" .. common.pick() .. "&limit=100")
end
