-- list_page: GET /items?limit=100&cursor=..., a page starting anywhere (the pool holds cursors).
package.path = (debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "?.lua;" .. package.path
local common = require("common")
setup, init, done = common.setup, common.init, common.done

function request()
    return common.get("/items?limit=100&cursor=" .. common.pick())
end
