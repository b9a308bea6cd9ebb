/*
 * constants.h - every limit, timeout and key prefix of the project, in one
 * place, each with its unit and the reason for its value. Code that
 * enforces a limit includes this header; docs quote it from here.
 */
#ifndef MSG_CONSTANTS_H
#define MSG_CONSTANTS_H

/* Message content, in bytes after JSON decoding (SPEC 4): 65,535 is the
 * largest accepted; 65,536 or more answers 413. */
#define MSG_CONTENT_MAX 65535

/* client_message_id: 1 to 64 printable ASCII characters (0x20-0x7E). */
#define MSG_CMID_MAX 64

/* Largest user id: 2^53-1, so ids survive a round trip through a JSON
 * double in any client. */
#define MSG_USER_ID_MAX 9007199254740991LL

/* Snippet of the last message in a conversation: code points, not bytes. */
#define MSG_SNIPPET_CODEPOINTS 100

/* Request bodies above this many bytes are refused with 413, checked on
 * Content-Length before the body is read and again while it is read. */
#define HTTP_BODY_MAX (1024 * 1024)

/* Bodies of internal responses read by the HTTP client: a message list
 * page of 100 messages of 64 KiB each, JSON-escaped (worst case 6x for
 * control characters), plus room. */
#define HTTP_CLIENT_BODY_MAX (48 * 1024 * 1024)

/* Batched list reads (POST /internal/reads): at most this many reads a
 * call, and a node stops adding answers once they passed this many
 * bytes (the caller sends the rest one by one), so a batch of large
 * pages stays far below HTTP_CLIENT_BODY_MAX. */
#define READS_BATCH_MAX 16
#define READS_ANSWER_BUDGET (4 * 1024 * 1024)
/* Nor does a node add answers once the batch has run this long: a read
 * that waits for a slow storage must not make the reads after it wait
 * too, nor hold a handoff (which waits for the whole batch) longer than
 * one read would. A batch of reads from memory takes under a
 * millisecond. */
#define READS_TIME_BUDGET_MS 50

/* List paging (SPEC 4). */
#define LIST_PAGE_SIZE_DEFAULT 20
#define LIST_PAGE_SIZE_MAX 100
/* Deepest page offset accepted: page * page_size beyond this is refused
 * with 400 rather than scanning a mailbox from the top (OFFSET cost). */
#define LIST_OFFSET_MAX 100000

/* JWT: clock skew tolerated on exp, nbf and iat by default
 * (MESSENGER_JWT_LEEWAY_S); SPEC 4 allows at most 60 s on expiry. The
 * setting is bounded so that a typo cannot make tokens live for hours. */
#define JWT_LEEWAY_S 60
#define JWT_LEEWAY_MAX_S 300
/* Longest Authorization header value accepted. */
#define JWT_TOKEN_MAX 4096

/* HMAC secrets (MESSENGER_JWT_SECRET, MESSENGER_INTERNAL_SECRET): at
 * least this many bytes, the output size of SHA-256, so a secret is never
 * the weak point of the MAC. Shorter ones only with MESSENGER_DEV_MODE=1. */
#define SECRET_MIN_BYTES 32

/* Internal calls (common/iauth.c): a signed call is accepted this many
 * seconds either side of the receiver's clock. Wide enough for NTP-level
 * skew plus a slow hop, narrow enough that a captured call soon dies. */
#define IAUTH_WINDOW_S 30

/* Ring: virtual tokens per cache node by default (SPEC 6). */
#define RING_VNODES_DEFAULT 128
#define RING_NODES_MAX 64

/* Message ids: 41 bits of milliseconds since ID_EPOCH_MS, 10 bits of node
 * id, 12 bits of sequence within the millisecond. */
#define ID_EPOCH_MS 1577836800000LL /* 2020-01-01T00:00:00Z */
#define ID_NODE_BITS 10
#define ID_SEQ_BITS 12
#define ID_NODE_MAX ((1 << ID_NODE_BITS) - 1)

/* Hot mailbox in Redis: how many conversations and how many messages per
 * conversation a cache node keeps for each owned user. Page 0 of the
 * largest page size fits, deeper pages read storage. */
#define HOT_CONVS_MAX 100
#define HOT_MSGS_MAX 100

/* Writes of one user are serialised by one of this many mutexes on the
 * owner node (striped by user id): enough that unrelated users rarely
 * share one, small enough to allocate at start-up. */
#define USER_LOCK_STRIPES 4096

/* How long a cache node gates the users of a planned move past the last
 * heartbeat answer that named the move, or from its start if none does
 * (a router of an older version names none). Above the lease a router
 * grants a node (ROUTER_NODE_LEASE_MS, checked there), so a gate never
 * lapses while the lease from the answer that last renewed it runs. */
#define HANDOFF_GATE_MS 5000

/* Service-to-service calls. */
#define HOP_CONNECT_TIMEOUT_MS 500
#define HOP_TIMEOUT_MS 5000
/* How long a send keeps trying to land the recipient's copy while the
 * recipient's node answers but cannot write it now (a planned move
 * gating the user, its storage instance restarting, its lease being
 * renewed), so that a 201 means both copies are durable whenever the two
 * nodes are up (SPEC 4). A node that does not answer is down: the copy
 * stays in the outbox at once, as SPEC allows then. Past the wait too. */
#define SEND_DELIVER_WAIT_MS 6000
/* Gateway to cache node: a send there makes a storage write and then
 * delivers the recipient's copy, for up to SEND_DELIVER_WAIT_MS plus one
 * last hop, so the gateway waits longer than all of it: giving up first
 * would turn a slow success into a client retry. */
#define GATEWAY_HOP_TIMEOUT_MS                                                 \
    (2 * HOP_TIMEOUT_MS + SEND_DELIVER_WAIT_MS + 2000)
/* How many times the gateway refreshes the ring and retries a call that a
 * cache node refused as misdirected (stale epoch or not the owner). */
#define GATEWAY_RING_RETRIES 3

/* Outbox: a recipient copy queued at send time is first retried by the
 * background worker this long after it was written, so the inline
 * delivery normally removes it first (one still waiting on a refusing
 * node may meet the worker's attempt: both are idempotent). Then at this
 * interval. */
#define OUTBOX_FIRST_RETRY_MS 3000
#define OUTBOX_RETRY_MS 1000
#define OUTBOX_CLAIM_BATCH 100

/* Graceful shutdown: in-flight requests get this long to finish. */
#define SHUTDOWN_GRACE_MS 10000

/* HTTP server resources (hs_config fields left 0 take these). Every
 * connection is a thread in thread-per-connection mode, so the
 * connection limit also caps threads; past it new connections are
 * accepted and closed at once. */
#define HTTP_MAX_CONNECTIONS_DEFAULT 4096
/* A connection on which nothing arrives or leaves for this long is
 * closed: idle keep-alive connections and clients that stopped sending.
 * libmicrohttpd restarts the clock on every byte, so a client trickling
 * a header byte by byte is cut off by nginx's client_header_timeout at
 * the edge, not by this. */
#define HTTP_CONN_TIMEOUT_S_DEFAULT 30
/* Memory of one connection, which holds the whole request header block:
 * a larger header is refused by libmicrohttpd (431). Above nginx's
 * large_client_header_buffers (4 x 8 KiB), so whatever the edge passes
 * fits. */
#define HTTP_CONN_MEMORY_DEFAULT (64 * 1024)
/* The same for listeners only the services call (cache, storage, router):
 * their header blocks are a few hundred bytes, and libmicrohttpd clears
 * the whole of a connection's memory between two requests (4.5% of a
 * cache node's CPU on deltas with 64 KiB). */
#define HTTP_CONN_MEMORY_INTERNAL (16 * 1024)

/* Longest wait of a request log line in its process's buffer before it
 * is written (common/log.c); nginx's access log flushes every second. */
#define LOG_FLUSH_MS_DEFAULT 200

/* Rate limits (common/ratelimit.c): token buckets in a table of this many
 * slots (about 32 bytes each), allocated at start-up. A key looks for its
 * bucket among RL_WAYS slots of one set and, when none is free, takes
 * over the least recently used: lookups stay constant-time and the table
 * never grows. RL_LOCK_STRIPES mutexes guard the sets. */
#define RL_SLOTS_DEFAULT 65536
#define RL_WAYS 8
#define RL_LOCK_STRIPES 256
/* Largest rate (tokens per second) and burst: keeps the fixed-point
 * arithmetic (thousandths of a token) far from overflow. */
#define RL_RATE_MAX 1000000
#define RL_BURST_MAX 1000000

/* Gateway defaults (GATEWAY_SEND_RATE/BURST, GATEWAY_ANON_RATE/BURST),
 * per gateway instance. Sends per second and burst per user: far above
 * what a person types, a stop for a runaway client. Failed
 * authentications per second and burst per client address, so a flood of
 * bad tokens is answered 429: the burst is room for a test suite's run of
 * about 90 refused tokens within a fraction of a second from one address
 * (tests/e2e/test_auth.py), and several clients behind one NAT. */
#define GATEWAY_SEND_RATE_DEFAULT 200
#define GATEWAY_SEND_BURST_DEFAULT 400
#define GATEWAY_ANON_RATE_DEFAULT 20
#define GATEWAY_ANON_BURST_DEFAULT 200

#endif
