-- 004_send_path.sql - msg_send and msg_deliver without nested calls.
--
-- 001's bodies lock the mailbox through mailbox_lock, which runs
-- INSERT ... ON CONFLICT DO NOTHING on every call although the row
-- exists on all but a mailbox's first write, and record the conversation
-- through PERFORM conversation_touch: each nested call is one more
-- function call and query of its own. Here both are written inline: the
-- lock reads the row FOR UPDATE first and inserts only when it is
-- missing; the conversations upsert is the statement of
-- conversation_touch (003); the plain result rows are returned through
-- the OUT columns instead of a query.
--
-- Measured on one instance, old and new bodies side by side on the same
-- tables. Server time per call (PL/pgSQL loop, 2000 calls of each,
-- median, 3 runs), with bench/send.pgbench's ids (mostly new mailboxes
-- and conversations): msg_send 134-161 us before, 120-144 after;
-- msg_deliver 113-118 before, 102-106 after. With existing mailboxes and
-- conversations: msg_send 115-128 -> 100-115 us, msg_deliver 84-111 ->
-- 71-101 us. bench/send.pgbench with both versions in one run (-c 1
-- -R 20, per statement, 11 runs of 30 s): msg_send 0.56-0.93 ms, 4% less
-- (median of runs), msg_deliver 0.29-0.98 ms, 2% less, within the noise
-- of cold caches at that rate. -c 4 -j 4 -T 8, 6 alternating pairs:
-- 2226 -> 2270 tx/s (medians), 5 of 6 pairs faster.
--
-- Same names, signatures, result rows and statuses, same row lock per
-- mailbox, same rows written. mailbox_lock and conversation_touch stay
-- defined for other callers; the send path no longer calls them.

-- The sender's copy of a new message; contract as in 001 ('replay',
-- 'floor', 'stored').
CREATE OR REPLACE FUNCTION msg_send(
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
    -- The mailbox lock: every write of one mailbox is serialised here. A
    -- row this transaction inserts needs no FOR UPDATE: no other
    -- transaction can see, lock or change it before this one ends. When
    -- the insert finds a row a concurrent first write committed
    -- meanwhile, that row is locked by the second SELECT.
    SELECT mb.seq, mb.max_id INTO v_seq, v_max
    FROM mailboxes mb WHERE mb.owner_id = p_sender_id FOR UPDATE;
    IF NOT FOUND THEN
        INSERT INTO mailboxes AS mb (owner_id, shard)
        VALUES (p_sender_id, p_shard)
        ON CONFLICT (owner_id) DO NOTHING
        RETURNING mb.seq, mb.max_id INTO v_seq, v_max;
        IF NOT FOUND THEN
            SELECT mb.seq, mb.max_id INTO v_seq, v_max
            FROM mailboxes mb WHERE mb.owner_id = p_sender_id FOR UPDATE;
        END IF;
    END IF;

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

    -- The other columns of the 'floor' and 'stored' rows stay NULL.
    IF p_message_id <= v_max THEN
        status := 'floor';
        seq := v_seq;
        max_id := v_max;
        RETURN NEXT;
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

    -- conversation_touch's statement: the last message only moves forward.
    INSERT INTO conversations AS c (owner_id, conversation_id, peer_id,
        last_message_id, snippet, last_updated_at, message_count, seq,
        landed_at, shard)
    VALUES (p_sender_id, p_conversation_id, p_recipient_id, p_message_id,
        p_snippet, p_sent_at, 1, v_seq, p_now_ms, p_shard)
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

    INSERT INTO idempotency_keys (sender_id, client_message_id,
        conversation_id, message_id, shard)
    VALUES (p_sender_id, p_client_message_id, p_conversation_id,
        p_message_id, p_shard);

    INSERT INTO outbox (sender_id, message_id, recipient_id, conversation_id,
        content, client_message_id, sent_at, next_attempt_at, attempts, shard)
    VALUES (p_sender_id, p_message_id, p_recipient_id, p_conversation_id,
        p_content, p_client_message_id, p_sent_at,
        p_now_ms + p_first_retry_ms, 0, p_shard);

    status := 'stored';
    seq := v_seq;
    max_id := p_message_id;
    RETURN NEXT;
END;
$$;

-- The recipient's copy of a message; contract as in 001 ('duplicate',
-- 'stored').
CREATE OR REPLACE FUNCTION msg_deliver(
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
    -- The mailbox lock, as in msg_send.
    SELECT mb.seq, mb.max_id INTO v_seq, v_max
    FROM mailboxes mb WHERE mb.owner_id = p_recipient_id FOR UPDATE;
    IF NOT FOUND THEN
        INSERT INTO mailboxes AS mb (owner_id, shard)
        VALUES (p_recipient_id, p_shard)
        ON CONFLICT (owner_id) DO NOTHING
        RETURNING mb.seq, mb.max_id INTO v_seq, v_max;
        IF NOT FOUND THEN
            SELECT mb.seq, mb.max_id INTO v_seq, v_max
            FROM mailboxes mb WHERE mb.owner_id = p_recipient_id FOR UPDATE;
        END IF;
    END IF;

    INSERT INTO messages (owner_id, conversation_id, message_id, sender_id,
        recipient_id, content, client_message_id, sent_at, seq, landed_at,
        shard)
    VALUES (p_recipient_id, p_conversation_id, p_message_id, p_sender_id,
        p_recipient_id, p_content, p_client_message_id, p_sent_at,
        v_seq + 1, p_now_ms, p_shard)
    ON CONFLICT (owner_id, conversation_id, message_id) DO NOTHING;
    IF NOT FOUND THEN
        status := 'duplicate';
        seq := v_seq;
        max_id := v_max;
        RETURN NEXT;
        RETURN;
    END IF;

    v_seq := v_seq + 1;
    v_max := GREATEST(v_max, p_message_id);
    UPDATE mailboxes mb SET seq = v_seq, max_id = v_max
    WHERE mb.owner_id = p_recipient_id;

    -- conversation_touch's statement: the last message only moves forward.
    INSERT INTO conversations AS c (owner_id, conversation_id, peer_id,
        last_message_id, snippet, last_updated_at, message_count, seq,
        landed_at, shard)
    VALUES (p_recipient_id, p_conversation_id, p_sender_id, p_message_id,
        p_snippet, p_sent_at, 1, v_seq, p_now_ms, p_shard)
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

    status := 'stored';
    seq := v_seq;
    max_id := v_max;
    RETURN NEXT;
END;
$$;
