-- idempotent: POST /items with an Idempotency-Key, every key and name unique (run tag, wrk
-- thread, counter): each request stores its answer with its item (compare with create).
package.path = (debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "?.lua;" .. package.path
local common = require("common")
setup, init, done = common.setup, common.init, common.done

request = common.keyed_create
