-- 001_init.sql - durable per-user mailboxes (one copy of every message per
-- participant), applied to every PostgreSQL instance by scripts/migrate.
--
-- Every table is keyed by the user that owns the row, so all rows of one
-- mailbox live on the instance that holds the user's logical shard. The
-- shard column records that shard, so a shard can be copied to another
-- instance with a plain WHERE shard = N.
--
-- Each mailbox has a change counter (mailboxes.seq). Every write that
-- changes a mailbox increments it once and stamps the rows it touched
-- with the new value; sync tokens carry it, and a delta read returns the
-- rows stamped above a token's value. Rows also keep landed_at, the
-- server's clock in ms when they last changed, for the timestamp form of
-- the delta query.
--
-- Content and snippet are bytea, not text: message content is any valid
-- UTF-8, and U+0000 is valid UTF-8 that a PostgreSQL text value cannot
-- hold. The storage service checks UTF-8 before writing.
--
-- Writes go through msg_send and msg_deliver: one statement, one round
-- trip, one transaction per write, serialised per mailbox by a row lock on
-- the mailbox row, so a reader never sees half a write.

CREATE TABLE mailboxes (
    owner_id bigint PRIMARY KEY,
    shard integer NOT NULL,
    seq bigint NOT NULL DEFAULT 0,   -- change counter
    max_id bigint NOT NULL DEFAULT 0 -- largest message_id in this mailbox
);

CREATE TABLE messages (
    owner_id bigint NOT NULL,
    conversation_id text NOT NULL,
    message_id bigint NOT NULL,
    sender_id bigint NOT NULL,
    recipient_id bigint NOT NULL,
    content bytea NOT NULL,
    client_message_id text NOT NULL,
    sent_at bigint NOT NULL,   -- ms, the sender's node clock (from the id)
    seq bigint NOT NULL,       -- mailbox seq when this copy landed
    landed_at bigint NOT NULL, -- server ms when this copy landed
    shard integer NOT NULL,
    PRIMARY KEY (owner_id, conversation_id, message_id)
);
CREATE INDEX messages_seq_idx ON messages (owner_id, conversation_id, seq);
CREATE INDEX messages_landed_idx ON messages (owner_id, conversation_id, landed_at);

CREATE TABLE conversations (
    owner_id bigint NOT NULL,
    conversation_id text NOT NULL,
    peer_id bigint NOT NULL,
    last_message_id bigint NOT NULL,
    snippet bytea NOT NULL,
    last_updated_at bigint NOT NULL, -- sent_at of the last message
    message_count bigint NOT NULL,
    seq bigint NOT NULL,             -- mailbox seq at its last change
    landed_at bigint NOT NULL,       -- server ms of its last change
    shard integer NOT NULL,
    PRIMARY KEY (owner_id, conversation_id)
);
CREATE INDEX conversations_recent_idx ON conversations (owner_id, last_message_id DESC);
CREATE INDEX conversations_seq_idx ON conversations (owner_id, seq);
CREATE INDEX conversations_landed_idx ON conversations (owner_id, landed_at);

-- Keys never expire (SPEC 4). conversation_id locates the stored message.
CREATE TABLE idempotency_keys (
    sender_id bigint NOT NULL,
    client_message_id text NOT NULL,
    conversation_id text NOT NULL,
    message_id bigint NOT NULL,
    shard integer NOT NULL,
    PRIMARY KEY (sender_id, client_message_id)
);

-- Recipient copies still to deliver (transactional outbox), on the
-- sender's instance. The message is kept as columns: jsonb cannot hold
-- U+0000 either.
CREATE TABLE outbox (
    sender_id bigint NOT NULL,
    message_id bigint NOT NULL,
    recipient_id bigint NOT NULL,
    conversation_id text NOT NULL,
    content bytea NOT NULL,
    client_message_id text NOT NULL,
    sent_at bigint NOT NULL,
    next_attempt_at bigint NOT NULL, -- ms; claimed entries move it by the lease
    attempts integer NOT NULL DEFAULT 0,
    shard integer NOT NULL,
    PRIMARY KEY (sender_id, message_id)
);
CREATE INDEX outbox_due_idx ON outbox (next_attempt_at);

-- Records one change of a conversation in owner's mailbox: a message with
-- id p_message_id landed there at mailbox seq p_seq. The last message
-- (id, snippet, time) only moves forward, so a recipient copy that lands
-- late never replaces a newer one; the change stamps (seq, landed_at)
-- always move, so a delta read returns the conversation.
CREATE FUNCTION conversation_touch(
    p_owner_id bigint, p_shard integer, p_conversation_id text,
    p_peer_id bigint, p_message_id bigint, p_snippet bytea,
    p_sent_at bigint, p_seq bigint, p_now_ms bigint)
RETURNS void
LANGUAGE sql AS $$
    INSERT INTO conversations AS c (owner_id, conversation_id, peer_id,
        last_message_id, snippet, last_updated_at, message_count, seq,
        landed_at, shard)
    VALUES (p_owner_id, p_conversation_id, p_peer_id, p_message_id,
        p_snippet, p_sent_at, 1, p_seq, p_now_ms, p_shard)
    ON CONFLICT (owner_id, conversation_id) DO UPDATE SET
        last_message_id = GREATEST(c.last_message_id, EXCLUDED.last_message_id),
        snippet = CASE WHEN EXCLUDED.last_message_id > c.last_message_id
                       THEN EXCLUDED.snippet ELSE c.snippet END,
        last_updated_at = CASE WHEN EXCLUDED.last_message_id > c.last_message_id
                               THEN EXCLUDED.last_updated_at
                               ELSE c.last_updated_at END,
        message_count = c.message_count + 1,
        seq = EXCLUDED.seq,
        landed_at = EXCLUDED.landed_at;
$$;

-- Creates the mailbox row if missing and locks it until the end of the
-- transaction: every write of one mailbox is serialised here. Returns the
-- current (seq, max_id).
CREATE FUNCTION mailbox_lock(p_owner_id bigint, p_shard integer,
    OUT o_seq bigint, OUT o_max_id bigint)
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO mailboxes (owner_id, shard) VALUES (p_owner_id, p_shard)
    ON CONFLICT (owner_id) DO NOTHING;
    SELECT mb.seq, mb.max_id INTO o_seq, o_max_id
    FROM mailboxes mb WHERE mb.owner_id = p_owner_id FOR UPDATE;
END;
$$;

-- The sender's copy of a new message (POST /internal/send). One row:
--   'replay': (sender, client_message_id) is already stored; the row holds
--             the stored message and whether its outbox entry (the
--             recipient copy not yet acknowledged) still exists. Nothing
--             is written.
--   'floor':  p_message_id is not above every id in the sender's mailbox;
--             max_id tells the caller what to exceed. Nothing is written.
--   'stored': the sender's copy, its conversation, the idempotency key and
--             the outbox entry for the recipient's copy were written
--             together; seq and max_id are the mailbox's new values.
CREATE FUNCTION msg_send(
    p_shard integer, p_message_id bigint, p_conversation_id text,
    p_sender_id bigint, p_recipient_id bigint, p_content bytea,
    p_client_message_id text, p_sent_at bigint, p_snippet bytea,
    p_now_ms bigint, p_first_retry_ms bigint)
RETURNS TABLE (status text, seq bigint, max_id bigint, message_id bigint,
    conversation_id text, sender_id bigint, recipient_id bigint,
    content bytea, client_message_id text, sent_at bigint,
    outbox_pending boolean)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    v_seq bigint;
    v_max bigint;
    v_cid text;
    v_mid bigint;
BEGIN
    SELECT l.o_seq, l.o_max_id INTO v_seq, v_max
    FROM mailbox_lock(p_sender_id, p_shard) l;

    -- The mailbox lock also serialises key lookups of this sender.
    SELECT k.conversation_id, k.message_id INTO v_cid, v_mid
    FROM idempotency_keys k
    WHERE k.sender_id = p_sender_id
      AND k.client_message_id = p_client_message_id;
    IF FOUND THEN
        RETURN QUERY
        SELECT 'replay'::text, v_seq, v_max, m.message_id, m.conversation_id,
               m.sender_id, m.recipient_id, m.content, m.client_message_id,
               m.sent_at,
               EXISTS (SELECT 1 FROM outbox o
                       WHERE o.sender_id = p_sender_id
                         AND o.message_id = m.message_id)
        FROM messages m
        WHERE m.owner_id = p_sender_id AND m.conversation_id = v_cid
          AND m.message_id = v_mid;
        RETURN;
    END IF;

    IF p_message_id <= v_max THEN
        RETURN QUERY
        SELECT 'floor'::text, v_seq, v_max, NULL::bigint, NULL::text,
               NULL::bigint, NULL::bigint, NULL::bytea, NULL::text,
               NULL::bigint, NULL::boolean;
        RETURN;
    END IF;

    v_seq := v_seq + 1;
    UPDATE mailboxes mb SET seq = v_seq, max_id = p_message_id
    WHERE mb.owner_id = p_sender_id;

    INSERT INTO messages (owner_id, conversation_id, message_id, sender_id,
        recipient_id, content, client_message_id, sent_at, seq, landed_at,
        shard)
    VALUES (p_sender_id, p_conversation_id, p_message_id, p_sender_id,
        p_recipient_id, p_content, p_client_message_id, p_sent_at, v_seq,
        p_now_ms, p_shard);

    PERFORM conversation_touch(p_sender_id, p_shard, p_conversation_id,
        p_recipient_id, p_message_id, p_snippet, p_sent_at, v_seq, p_now_ms);

    INSERT INTO idempotency_keys (sender_id, client_message_id,
        conversation_id, message_id, shard)
    VALUES (p_sender_id, p_client_message_id, p_conversation_id,
        p_message_id, p_shard);

    INSERT INTO outbox (sender_id, message_id, recipient_id, conversation_id,
        content, client_message_id, sent_at, next_attempt_at, attempts, shard)
    VALUES (p_sender_id, p_message_id, p_recipient_id, p_conversation_id,
        p_content, p_client_message_id, p_sent_at,
        p_now_ms + p_first_retry_ms, 0, p_shard);

    RETURN QUERY
    SELECT 'stored'::text, v_seq, p_message_id, NULL::bigint, NULL::text,
           NULL::bigint, NULL::bigint, NULL::bytea, NULL::text,
           NULL::bigint, NULL::boolean;
END;
$$;

-- The recipient's copy of a message (POST /internal/deliver), idempotent
-- by (recipient, message_id). One row:
--   'duplicate': the copy was already there; nothing is written.
--   'stored':    the copy and its conversation were written; seq and
--                max_id are the mailbox's new values.
CREATE FUNCTION msg_deliver(
    p_shard integer, p_message_id bigint, p_conversation_id text,
    p_sender_id bigint, p_recipient_id bigint, p_content bytea,
    p_client_message_id text, p_sent_at bigint, p_snippet bytea,
    p_now_ms bigint)
RETURNS TABLE (status text, seq bigint, max_id bigint)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    v_seq bigint;
    v_max bigint;
BEGIN
    SELECT l.o_seq, l.o_max_id INTO v_seq, v_max
    FROM mailbox_lock(p_recipient_id, p_shard) l;

    INSERT INTO messages (owner_id, conversation_id, message_id, sender_id,
        recipient_id, content, client_message_id, sent_at, seq, landed_at,
        shard)
    VALUES (p_recipient_id, p_conversation_id, p_message_id, p_sender_id,
        p_recipient_id, p_content, p_client_message_id, p_sent_at,
        v_seq + 1, p_now_ms, p_shard)
    ON CONFLICT (owner_id, conversation_id, message_id) DO NOTHING;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'duplicate'::text, v_seq, v_max;
        RETURN;
    END IF;

    v_seq := v_seq + 1;
    v_max := GREATEST(v_max, p_message_id);
    UPDATE mailboxes mb SET seq = v_seq, max_id = v_max
    WHERE mb.owner_id = p_recipient_id;

    PERFORM conversation_touch(p_recipient_id, p_shard, p_conversation_id,
        p_sender_id, p_message_id, p_snippet, p_sent_at, v_seq, p_now_ms);

    RETURN QUERY SELECT 'stored'::text, v_seq, v_max;
END;
$$;
