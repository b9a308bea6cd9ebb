-- common.lua - shared by the wrk scripts of bench/quick-load: reads the
-- users and tokens file ("user_id token" per line) named by the first
-- script argument.
local M = {}

function M.load_users(path)
    local users = {}
    for line in io.lines(path) do
        local id, token = line:match("^(%d+) (%S+)$")
        if id then
            users[#users + 1] = {id = tonumber(id), token = token}
        end
    end
    assert(#users >= 2, "need at least two users in " .. path)
    return users
end

function M.conversation(a, b)
    if a < b then return a .. "_" .. b end
    return b .. "_" .. a
end

return M
