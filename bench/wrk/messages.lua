-- messages.lua - wrk script: GET the newest page of a conversation's
-- messages, for conversations between neighbouring users in the list.
-- Arguments: users_file
package.path = package.path .. ";" .. debug.getinfo(1, "S").source:match("@(.*/)") .. "?.lua"
local common = require("common")
local users, counter

function init(args)
    users = common.load_users(args[1])
    counter = 0
end

function request()
    counter = counter + 1
    local i = counter % #users + 1
    local u, peer = users[i], users[i % #users + 1]
    local path = string.format("/v1/users/%d/conversations/%s/messages?page_size=20",
        u.id, common.conversation(u.id, peer.id))
    return wrk.format("GET", path, {["Authorization"] = "Bearer " .. u.token})
end
