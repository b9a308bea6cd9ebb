-- Router high availability: the leader lease, the published ring and what
-- each router last heard from each cache node. Only the first PostgreSQL
-- instance's copy is used (ROUTER_PG_URL); migrations run everywhere so
-- every instance has the same schema.

-- One row. holder/term/lease_until: the leader lease, taken and renewed
-- with conditional UPDATEs; term grows on every change of holder and
-- fences ring writes. epoch/ring: the ring in force, written only by the
-- holder of an unexpired lease.
CREATE TABLE router_state (
    id integer PRIMARY KEY CHECK (id = 1),
    holder text NOT NULL DEFAULT '',
    term bigint NOT NULL DEFAULT 0,
    lease_until timestamptz NOT NULL DEFAULT 'epoch',
    epoch bigint NOT NULL DEFAULT 0,
    ring text NOT NULL DEFAULT ''
);
INSERT INTO router_state (id) VALUES (1);

-- The newest heartbeat each router received from each cache node, flushed
-- by every router a few times a second: the leader declares a node dead
-- only when no router heard it for the dead timeout.
CREATE TABLE router_seen (
    router text NOT NULL,
    node text NOT NULL,
    url text NOT NULL,
    seen_at timestamptz NOT NULL,
    PRIMARY KEY (router, node)
);
