/*
 * hot_scripts.h - the Lua scripts behind hot.c's writes. Each runs
 * atomically in Redis; reads need no script (hot.c reads a window and
 * its meta in one MULTI/EXEC). Keys of user U: u:{U} meta hash (seq,
 * max, cn = conversation window size, cc = 1 when the window holds every
 * conversation, and m:<cid> = "<size>:<complete>" per cached message
 * window), c:{U} the conversation window, x:{U} conversation id -> its
 * entry in c:{U}, m:{U}:<cid> a message window. Entries start with a
 * 20-digit id, so the lexical order of equal-score zset members is id
 * order.
 */
#ifndef CACHE_HOT_SCRIPTS_H
#define CACHE_HOT_SCRIPTS_H

/* KEYS u c x m; ARGV seq max cid conv_entry msg_entry convs_max msgs_max.
 * An entry below the lowest of an incomplete window is left out: the
 * window only ever holds a top-N. A user whose keys disagree (Redis
 * evicts keys one by one under maxmemory: the window, or the index x
 * without the window) is dropped, never patched: applied to a window
 * whose index lost a conversation, the new entry would sit beside the
 * old one, and pages would list that conversation twice. The next read
 * loads the user again from storage. So is a user whose stored seq is
 * not the new one less one (or the same: a retried apply): storage
 * counts exactly one per landed copy, so a gap means Redis missed a
 * write (one a node stored after it gave up on it, or one stored by a
 * node acting late) and its windows may lack that message. Two of these
 * run per send, so the
 * script makes as few calls into Redis as it can (each costs a few
 * microseconds of Redis's one thread): one HMGET reads the meta, sizes
 * are counted here from ZADD's answers instead of asked again, a window
 * is trimmed with one range removal, and the meta is written by one
 * HSET at the end. */
#define HOT_LUA_APPLY                                                          \
    "local u, c, x, m = KEYS[1], KEYS[2], KEYS[3], KEYS[4]\n"                  \
    "local cid, ce, me = ARGV[3], ARGV[4], ARGV[5]\n"                          \
    "local mk = 'm:' .. cid\n"                                                 \
    "local f = redis.call('HMGET', u, 'cn', 'cc', mk, 'seq')\n"                \
    "local cn = tonumber(f[1])\n"                                              \
    "if cn == nil then\n"                                                      \
    "  if redis.call('EXISTS', u) == 1 then redis.call('DEL', u, c, x) end\n"  \
    "  return 0 end\n"                                                         \
    "local seq, was = tonumber(ARGV[1]), tonumber(f[4])\n"                     \
    "if was == nil or seq > was + 1 or seq < was then\n"                       \
    "  redis.call('DEL', u, c, x) return 0 end\n"                              \
    "local card = redis.call('ZCARD', c)\n"                                    \
    "if card ~= cn or redis.call('HLEN', x) ~= cn then\n"                      \
    "  redis.call('DEL', u, c, x) return 0 end\n"                              \
    "local meta = {'seq', ARGV[1], 'max', ARGV[2]}\n"                          \
    "local old = redis.call('HGET', x, cid)\n"                                 \
    "if old then\n"                                                            \
    "  if old < ce then\n"                                                     \
    "    if redis.call('ZREM', c, old) == 0 then\n"                            \
    "      redis.call('DEL', u, c, x) return 0 end\n"                          \
    "    card = card - 1 + redis.call('ZADD', c, 0, ce)\n"                     \
    "    redis.call('HSET', x, cid, ce) end\n"                                 \
    "else\n"                                                                   \
    "  local low = redis.call('ZRANGE', c, 0, 0)[1]\n"                         \
    "  if f[2] == '1' or (low and ce > low) then\n"                            \
    "    card = card + redis.call('ZADD', c, 0, ce)\n"                         \
    "    redis.call('HSET', x, cid, ce) end\n"                                 \
    "end\n"                                                                    \
    "local over = card - tonumber(ARGV[6])\n"                                  \
    "if over > 0 then\n"                                                       \
    "  local gone = redis.call('ZRANGE', c, 0, over - 1)\n"                    \
    "  redis.call('ZREMRANGEBYRANK', c, 0, over - 1)\n"                        \
    "  for i = 1, #gone do\n"                                                  \
    "    gone[i] = string.match(gone[i], '^%d+|([^|]+)|') end\n"               \
    "  redis.call('HDEL', x, unpack(gone))\n"                                  \
    "  card = card - over\n"                                                   \
    "  meta[#meta + 1] = 'cc' meta[#meta + 1] = '0'\n"                         \
    "end\n"                                                                    \
    "meta[#meta + 1] = 'cn' meta[#meta + 1] = card\n"                          \
    "if f[3] then\n"                                                           \
    "  local cnt, comp = string.match(f[3], '^(%d+):(%d)$')\n"                 \
    "  local mcard = redis.call('ZCARD', m)\n"                                 \
    "  if tonumber(cnt) ~= mcard then\n"                                       \
    "    redis.call('HDEL', u, mk) redis.call('DEL', m)\n"                     \
    "  else\n"                                                                 \
    "    local lo = redis.call('ZRANGE', m, 0, 0)[1]\n"                        \
    "    if comp == '1' or (lo and me > lo) then\n"                            \
    "      mcard = mcard + redis.call('ZADD', m, 0, me) end\n"                 \
    "    local mover = mcard - tonumber(ARGV[7])\n"                            \
    "    if mover > 0 then\n"                                                  \
    "      redis.call('ZREMRANGEBYRANK', m, 0, mover - 1)\n"                   \
    "      mcard = mcard - mover comp = '0' end\n"                             \
    "    meta[#meta + 1] = mk meta[#meta + 1] = mcard .. ':' .. comp\n"        \
    "  end\n"                                                                  \
    "end\n"                                                                    \
    "redis.call('HSET', u, unpack(meta))\n"                                    \
    "return 1\n"

/* KEYS u c x index; ARGV seq max complete uid score entries... The
 * user goes into the node's user index (hot_conn.h) in the same step
 * that creates its meta, so no meta exists that the index lacks. */
#define HOT_LUA_LOAD_USER                                                      \
    "redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])\n"                           \
    "redis.call('HSET', KEYS[1], 'seq', ARGV[1], 'max', ARGV[2],\n"            \
    "  'cc', ARGV[3], 'cn', #ARGV - 5)\n"                                      \
    "redis.call('ZADD', KEYS[4], ARGV[5], ARGV[4])\n"                          \
    "for i = 6, #ARGV do\n"                                                    \
    "  redis.call('ZADD', KEYS[2], 0, ARGV[i])\n"                              \
    "  redis.call('HSET', KEYS[3],\n"                                          \
    "    string.match(ARGV[i], '^%d+|([^|]+)|'), ARGV[i])\n"                   \
    "end\n"                                                                    \
    "return 1\n"

/* KEYS u m; ARGV cid complete entries... */
#define HOT_LUA_LOAD_MSGS                                                      \
    "if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end\n"                \
    "redis.call('DEL', KEYS[2])\n"                                             \
    "for i = 3, #ARGV do redis.call('ZADD', KEYS[2], 0, ARGV[i]) end\n"        \
    "redis.call('HSET', KEYS[1], 'm:' .. ARGV[1],\n"                           \
    "  (#ARGV - 2) .. ':' .. ARGV[2])\n"                                       \
    "return 1\n"

#endif
