-- mixed: 70% get, 20% adjust (each of an item picked at random from the pool), 10% create.
package.path = (debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "?.lua;" .. package.path
local common = require("common")
setup, init, done = common.setup, common.init, common.done

function request()
    local draw = math.random()
    if draw < 0.7 then
        return common.get("/items/" .. common.pick())
    elseif draw < 0.9 then
        return common.adjust(common.pick())
    end
    return common.create()
end
