/* The sessions the plugin accepted, keyed by the broker's client pointer.
 *
 * Keyed by pointer, not by client id: when a device reconnects, the broker
 * authenticates the new connection before it drops the old one with the
 * same id, and the old one's disconnect must not remove the new entry.
 * Open addressing with linear probing; deletions leave tombstones, and the
 * table is rebuilt when live entries plus tombstones pass half of it. */
#include <stdlib.h>
#include <string.h>

#include "cloud/cloud_int.h"

#define TOMBSTONE ((const struct mosquitto *)(uintptr_t)1)
#define MIN_CAP 64u

static size_t hash_ptr(const struct mosquitto *p, size_t cap)
{
    uint64_t x = (uint64_t)(uintptr_t)p;
    /* splitmix64 finaliser: allocator addresses share their low bits. */
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return (size_t)x & (cap - 1);
}

static bool grow(cloud_sessions *t)
{
    size_t cap = t->cap ? t->cap : MIN_CAP;
    cloud_session *old = t->slot, *n;
    size_t old_cap = t->cap;

    /* Double only when live entries need it; otherwise rebuilding at the
     * same size just clears the tombstones. */
    if (t->live + 1 > cap / 4 && t->cap)
        cap *= 2;
    if (!(n = calloc(cap, sizeof *n)))
        return false;
    for (size_t i = 0; i < old_cap; i++) {
        if (!old[i].client || old[i].client == TOMBSTONE)
            continue;
        size_t j = hash_ptr(old[i].client, cap);
        while (n[j].client)
            j = (j + 1) & (cap - 1);
        n[j] = old[i];
    }
    free(old);
    t->slot = n;
    t->cap = cap;
    t->used = t->live;
    return true;
}

cloud_session *cloud_sessions_get(cloud_sessions *t, const struct mosquitto *client)
{
    if (!t->cap || !client)
        return NULL;
    for (size_t j = hash_ptr(client, t->cap), k = 0; k < t->cap; j = (j + 1) & (t->cap - 1), k++) {
        if (!t->slot[j].client)
            return NULL;
        if (t->slot[j].client == client)
            return &t->slot[j];
    }
    return NULL;
}

bool cloud_sessions_put(cloud_sessions *t, const cloud_session *s)
{
    cloud_session *e = cloud_sessions_get(t, s->client);
    size_t j;

    if (e) {
        X509_free(e->cert);
        *e = *s;
        return true;
    }
    if ((t->used + 1) * 2 > t->cap && !grow(t))
        return false;
    j = hash_ptr(s->client, t->cap);
    while (t->slot[j].client && t->slot[j].client != TOMBSTONE)
        j = (j + 1) & (t->cap - 1);
    if (!t->slot[j].client)
        t->used++;
    t->slot[j] = *s;
    t->live++;
    return true;
}

void cloud_sessions_del(cloud_sessions *t, cloud_session *s)
{
    X509_free(s->cert);
    memset(s, 0, sizeof *s);
    s->client = TOMBSTONE;
    t->live--;
}

cloud_session *cloud_sessions_next(cloud_sessions *t, size_t *i)
{
    for (; *i < t->cap; (*i)++) {
        cloud_session *s = &t->slot[*i];
        if (s->client && s->client != TOMBSTONE) {
            (*i)++;
            return s;
        }
    }
    return NULL;
}

cloud_session *cloud_sessions_find_id(cloud_sessions *t, const char *id)
{
    size_t i = 0;
    cloud_session *s;

    while ((s = cloud_sessions_next(t, &i)))
        if (!strcmp(s->id, id))
            return s;
    return NULL;
}

void cloud_sessions_free(cloud_sessions *t)
{
    size_t i = 0;
    cloud_session *s;

    while ((s = cloud_sessions_next(t, &i)))
        X509_free(s->cert);
    free(t->slot);
    memset(t, 0, sizeof *t);
}
