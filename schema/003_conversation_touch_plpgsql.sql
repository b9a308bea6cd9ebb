-- 003_conversation_touch_plpgsql.sql - conversation_touch as PL/pgSQL.
--
-- 001 wrote it in LANGUAGE sql. Called through PERFORM from msg_send and
-- msg_deliver, a SQL-language function is planned again on every call,
-- while PL/pgSQL keeps the plan of its INSERT for the life of the
-- session: measured on the send path, a recipient copy (msg_deliver)
-- took 0.23-0.34 ms of server time before and 0.14-0.19 ms after
-- (docs/performance.md). Same signature, same statement, same result.
CREATE OR REPLACE FUNCTION conversation_touch(
    p_owner_id bigint, p_shard integer, p_conversation_id text,
    p_peer_id bigint, p_message_id bigint, p_snippet bytea,
    p_sent_at bigint, p_seq bigint, p_now_ms bigint)
RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
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
END;
$$;
