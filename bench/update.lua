-- update: PATCH /items/{id} {"qty":n} of an existing item, picked at random from the pool.
package.path = (debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "?.lua;" .. package.path
local common = require("common")
setup, init, done = common.setup, common.init, common.done

function request()
    local body = string.format('{"qty":%d}', math.random(0, 1000000))
    return wrk.format("PATCH", "/items/" .. common.pick(), common.write_headers, body)
end
