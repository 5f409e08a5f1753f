-- get: GET /items/{id} of an existing item, picked at random from the pool.
package.path = (debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "?.lua;" .. package.path
local common = require("common")
setup, init, done = common.setup, common.init, common.done

function request()
    return common.get("/items/" .. common.pick())
end
