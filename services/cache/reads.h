/*
 * reads.h - several list reads in one call: POST /internal/reads
 * (docs/internal-api.md).
 *
 * A gateway that already has a read in flight to this node sends the
 * reads that queued up behind it together, so a busy hop costs one
 * round trip, one wake-up of a node thread and one signature check per
 * batch instead of per read. Each read is fenced and answered exactly
 * as its own GET would be; the batch answer carries those answers in
 * order.
 */
#ifndef CACHE_READS_H
#define CACHE_READS_H

#include "http_server.h"

/* Body: {"reads": [{"user": "7", "conversation": "7_9" (messages only),
 * "query": "<canonical list query>", "epoch": "<X-Ring-Epoch>",
 * "request_id": "..."}, ...]}, 1 to READS_BATCH_MAX reads. Answers 200
 * with the reads' answers in their order (reads_wire.h), those of the
 * first READS_ANSWER_BUDGET bytes at least one: a caller sends the reads
 * left over on their own. A body that is not such a batch gets 400 and
 * nothing is read. */
void reads_handle(hs_request *req, hs_reply *rep);

#endif
