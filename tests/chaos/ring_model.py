"""The router's ring, recomputed on the client side.

The chaos driver needs to know which cache node owns which user (to say
which users a kill affects, and how many users a join or a leave moves)
without asking the cache nodes for every user. It reads the ring the
router publishes (GET /internal/ring, the ring_to_json form of
common/ring.c) and places users with the same hash as common/ring.c:
FNV-1a 64 over the bytes, then the splitmix64 finaliser. Token i of a
node is the hash of "<slot>#<i>", where the slot is the node's "slot"
member when the ring has one (a standby that took over a dead node holds
that node's slot, so exactly its tokens) and the node's name otherwise;
a node that publishes its own token list is placed by that list instead. A user belongs to the
first token clockwise from the hash of its decimal id; equal hashes are
ordered by node name, as ring.c's sort does.

Owners computed here are checked against the cache nodes' own answers
(200 for the owner, 421 elsewhere) by the driver, so a divergence from
ring.c shows up as a failed check rather than as wrong figures.
"""

import bisect
import json

MASK64 = (1 << 64) - 1
FNV_OFFSET = 14695981039346656037
FNV_PRIME = 1099511628211


def ring_hash(data):
    """common/ring.c ring_hash of bytes (or a str, UTF-8 encoded)."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    h = FNV_OFFSET
    for byte in data:
        h ^= byte
        h = (h * FNV_PRIME) & MASK64
    h = ((h ^ (h >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    h = ((h ^ (h >> 27)) * 0x94D049BB133111EB) & MASK64
    return h ^ (h >> 31)


def hash_user(user_id):
    return ring_hash(str(int(user_id)))


# Node states that own no tokens even when the router lists the node.
_IDLE_STATES = {"standby", "dead", "down", "removed", "left"}


def _token_hash(value, name):
    """One entry of a published token list: an integer hash, a decimal
    string of one, or a token key such as "cache-1#7"."""
    if isinstance(value, bool):
        raise ValueError("token of %s is a boolean" % name)
    if isinstance(value, int):
        return value & MASK64
    if isinstance(value, str):
        if value.isdigit():
            return int(value) & MASK64
        return ring_hash(value)
    if isinstance(value, dict):
        for key in ("hash", "token", "key"):
            if key in value:
                return _token_hash(value[key], name)
    raise ValueError("token %r of %s not understood" % (value, name))


def _is_idle(node):
    state = str(node.get("state") or node.get("role") or "").lower()
    return node.get("standby") is True or state in _IDLE_STATES


class Ring:
    """An immutable ring: epoch, the nodes that own tokens, and owner()."""

    def __init__(self, doc):
        if isinstance(doc, (bytes, str)):
            doc = json.loads(doc)
        self.doc = doc
        self.epoch = int(doc["epoch"])
        self.vnodes = int(doc.get("vnodes", 128))
        self.urls = {}
        self.idle = []
        pairs = []
        top_tokens = doc.get("tokens")
        for node in doc["nodes"]:
            name = node["name"]
            self.urls[name] = node.get("url", "")
            if "tokens" in node:
                toks = [_token_hash(t, name) for t in node["tokens"]]
            elif isinstance(top_tokens, dict) and name in top_tokens:
                toks = [_token_hash(t, name) for t in top_tokens[name]]
            elif _is_idle(node):
                toks = []
            else:
                slot = node.get("slot") or name
                toks = [ring_hash("%s#%d" % (slot, i)) for i in range(self.vnodes)]
            if not toks:
                self.idle.append(name)
            pairs.extend((t, name) for t in toks)
        if isinstance(top_tokens, list):
            # [{"hash": H, "node": NAME}, ...] or [[H, NAME], ...]
            for entry in top_tokens:
                if isinstance(entry, dict):
                    pairs.append((_token_hash(entry, entry.get("node")), entry["node"]))
                else:
                    pairs.append((_token_hash(entry[0], entry[1]), entry[1]))
        if not pairs:
            raise ValueError("ring of epoch %d has no tokens" % self.epoch)
        pairs.sort()
        self._hashes = [p[0] for p in pairs]
        self._names = [p[1] for p in pairs]
        self.active = sorted(set(self._names))

    def owner(self, user_id):
        i = bisect.bisect_left(self._hashes, hash_user(user_id))
        if i == len(self._hashes):
            i = 0
        return self._names[i]

    def url_of(self, name):
        return self.urls.get(name, "")

    def owners(self, users):
        return {u: self.owner(u) for u in users}


def moved_fraction(before, after, users):
    """Fraction of users whose owner differs between two rings, and the
    moved users."""
    moved = [u for u in users if before.owner(u) != after.owner(u)]
    return (len(moved) / len(users) if users else 0.0), moved
