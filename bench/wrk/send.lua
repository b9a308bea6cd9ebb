-- send.lua - wrk script: POST /v1/messages, a fresh client_message_id per
-- request, senders and recipients spread over the user list.
-- Arguments: users_file run_nonce
package.path = package.path .. ";" .. debug.getinfo(1, "S").source:match("@(.*/)") .. "?.lua"
local common = require("common")
local users, nonce, counter
local thread_id = 0
local threads = {}

function setup(thread)
    thread:set("tid", thread_id)
    thread_id = thread_id + 1
    table.insert(threads, thread)
end

function init(args)
    users = common.load_users(args[1])
    nonce = args[2] or "run"
    counter = 0
end

function request()
    counter = counter + 1
    local i = (counter * 7 + tid * 13) % #users + 1
    local j = (i + counter % (#users - 1)) % #users + 1
    local s, r = users[i], users[j]
    local body = string.format(
        '{"sender_id":%d,"recipient_id":%d,"content":"load test message %d",' ..
        '"client_message_id":"%s-%d-%d"}', s.id, r.id, counter, nonce, tid,
        counter)
    return wrk.format("POST", "/v1/messages", {
        ["Authorization"] = "Bearer " .. s.token,
        ["Content-Type"] = "application/json"}, body)
end
