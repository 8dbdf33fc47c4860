/* A cache of chain verdicts, so that a device that reconnects with the
 * certificate it had does not pay for ea_pki_verify_chain again.
 *
 * Why: the broker's TLS layer has just verified the chain (two ECDSA
 * verifications); ours repeats them plus one per CRL, about 0.2-0.5 ms on
 * the machines of spec §3, next to a 1.1-1.6 ms handshake. Only "valid"
 * verdicts are kept (an attacker must not be able to fill the cache), each
 * for a bounded time, and all of them are dropped when the trust material
 * changes (a new CRL bumps the generation). The leaf's own validity period
 * is checked on every hit by the caller.
 *
 * Direct-mapped: one slot per hash value, a collision just evicts. O(1),
 * no allocation after init, nothing to tune but the size. */
#include <stdlib.h>
#include <string.h>

#include "cloud/cloud_int.h"

bool cloud_vcache_init(cloud_vcache *v, size_t cap)
{
    size_t n = 1;

    memset(v, 0, sizeof *v);
    if (cap == 0)
        return true; /* off */
    while (n < cap && n < (1u << 24))
        n <<= 1;
    if (!(v->slot = calloc(n, sizeof *v->slot)))
        return false;
    v->cap = n;
    return true;
}

void cloud_vcache_free(cloud_vcache *v)
{
    free(v->slot);
    memset(v, 0, sizeof *v);
}

static size_t slot_of(const cloud_vcache *v, const uint8_t fpr[32])
{
    uint64_t h;
    memcpy(&h, fpr, sizeof h); /* a SHA-256 is already uniform */
    return (size_t)h & (v->cap - 1);
}

bool cloud_vcache_hit(cloud_vcache *v, const uint8_t fpr[32], uint64_t gen, int64_t now_ms)
{
    const struct cloud_vcache_slot *s;

    if (!v->cap)
        return false;
    s = &v->slot[slot_of(v, fpr)];
    if (s->gen == gen && s->until_ms > now_ms && !memcmp(s->fpr, fpr, 32)) {
        v->hits++;
        return true;
    }
    v->misses++;
    return false;
}

void cloud_vcache_put(cloud_vcache *v, const uint8_t fpr[32], uint64_t gen, int64_t until_ms)
{
    struct cloud_vcache_slot *s;

    if (!v->cap)
        return;
    s = &v->slot[slot_of(v, fpr)];
    memcpy(s->fpr, fpr, 32);
    s->gen = gen;
    s->until_ms = until_ms;
}
