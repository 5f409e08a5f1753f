-- list: GET /items?limit=100, the first page (the pool holds at least 100 items).
package.path = (debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "?.lua;" .. package.path
local common = require("common")
setup, done = common.setup, common.done

local first_page

function init(args)
    common.init(args)
    first_page = common.get("/items?limit=100")
end

function request()
    return first_page
end
