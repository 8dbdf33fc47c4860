/* Internal: the sealed, crash-safe object store of one emulated chip.
 *
 * Layout of a state directory DIR (one chip):
 *   DIR/seal.key      32-byte sealing secret, 0600 (unless supplied from the
 *                     environment or another path: see ea_store_open)
 *   DIR/lock          flock()ed while a process uses the chip; holds the
 *                     holder's pid and program name for the error message
 *   DIR/objects/      one sealed blob per persistent object, named by id and
 *                     generation, plus the sealed index (the commit point)
 *
 * Each blob is AES-256-GCM under a key derived with HKDF-SHA256 from the
 * sealing secret. The AAD binds the object id, the generation counter and
 * the object's metadata (type, policy, attributes) so that blobs cannot be
 * swapped between ids. The index (itself sealed) records the generation of
 * every live object, so rolling one object back to an older blob is
 * detected. A put/delete is durable and atomic when it returns EA_OK: a
 * process killed at any instant leaves every object either old or new.
 *
 * Not thread-safe: the emulator serialises access with its own lock. */
#ifndef EA_EMU_STORE_H
#define EA_EMU_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "edgeauth/err.h"

#define EA_STORE_SECRET_LEN 32u
#define EA_STORE_META_MAX 512u      /* authenticated, not encrypted */
#define EA_STORE_VALUE_MAX 0x8000u  /* encrypted */

typedef struct ea_store ea_store;

/* One object as the store sees it. meta is opaque to the store (the emulator
 * encodes type, policy, origin... in it); value is secret. */
typedef struct ea_store_rec {
    uint32_t id;
    const uint8_t *meta;
    size_t meta_len;
    const uint8_t *value;
    size_t value_len;
} ea_store_rec;

/* Where the sealing secret comes from, in this order: the environment
 * variable EDGEAUTH_SE_SEAL_KEY (64 hex digits), else key_path if not NULL,
 * else DIR/seal.key. */
typedef struct ea_store_opts {
    const char *key_path;
    const char *holder; /* program name written in DIR/lock, e.g. "edgeauth-se serve" */
} ea_store_opts;

/* Create a new, empty store in dir (created if missing, mode 0700), with a
 * fresh random sealing secret written 0600 to key_path or DIR/seal.key
 * (unless EDGEAUTH_SE_SEAL_KEY supplies one). Refuses (EA_ERR_EXISTS) when
 * dir already holds a store. */
ea_err ea_store_create(const char *dir, const ea_store_opts *opts);

/* Open and lock the store. On EA_ERR_LOCKED / EA_ERR_CORRUPT / EA_ERR_IO,
 * errbuf (if not NULL) receives a one-line reason naming the holder of the
 * lock or the damaged file. */
ea_err ea_store_open(const char *dir, const ea_store_opts *opts, ea_store **out, char *errbuf,
                     size_t errlen);

/* Release the lock and wipe the key. NULL is a no-op. */
void ea_store_close(ea_store *st);

/* Visit every live object in ascending id order. A blob that fails
 * authentication is passed with status EA_ERR_CORRUPT and rec->value NULL
 * (rec->meta is NULL too: nothing unauthenticated is handed out). The value
 * buffer is wiped after the callback returns. Stops at the first callback
 * result other than EA_OK and returns it. */
typedef ea_err ea_store_visit_fn(void *ctx, ea_err status, const ea_store_rec *rec);
ea_err ea_store_foreach(ea_store *st, ea_store_visit_fn *fn, void *ctx);

/* Insert or replace one object, atomically and durably. */
ea_err ea_store_put(ea_store *st, const ea_store_rec *rec);

/* Remove one object atomically. EA_ERR_NOT_FOUND if absent. */
ea_err ea_store_del(ea_store *st, uint32_t id);

/* Remove every object whose id keep(ctx, id) returns 0 for, in one atomic
 * step. */
ea_err ea_store_del_where(ea_store *st, int (*keep)(void *ctx, uint32_t id), void *ctx);

/* Check a store without the applet: report each damaged or missing blob
 * through report(ctx, line). Returns EA_OK when everything authenticates,
 * EA_ERR_CORRUPT otherwise. Takes the lock like ea_store_open. */
ea_err ea_store_check(const char *dir, const ea_store_opts *opts,
                      void (*report)(void *ctx, const char *line), void *ctx);

#endif
