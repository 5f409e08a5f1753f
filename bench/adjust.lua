-- adjust: POST /items/{id}/adjustments {"delta":1}, always on one hot item (the pool's first).
package.path = (debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "?.lua;" .. package.path
local common = require("common")
setup, done = common.setup, common.done

local hot

function init(args)
    common.init(args)
    hot = common.adjust(common.pool[1])
end

function request()
    return hot
end
