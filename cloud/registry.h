/* The cloud's device registry: one record per device id, behind an
 * interface small enough that another database could replace SQLite.
 *
 * Shared by the broker plugin (edgeauth_cloud.so) and the CLI (`edgeauth
 * cloud devices|revoke|import`), which open the same file at the same time:
 * the SQLite implementation uses WAL mode (readers never wait for the
 * writer) and a busy timeout (a writer waits for the other writer instead of
 * failing). docs/CLOUD.md has the schema.
 *
 * Times are Unix seconds; 0 means "never". Strings in ea_registry_device
 * are NUL-terminated and truncated never: a value that does not fit is
 * refused with EA_ERR_ARG when writing and cannot exist when reading. */
#ifndef EA_CLOUD_REGISTRY_H
#define EA_CLOUD_REGISTRY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "edgeauth/err.h"

#define EA_REGISTRY_ID_MAX 64u      /* device id bytes (the CN; ub-common-name is 64) */
#define EA_REGISTRY_UID_MAX 64u     /* SE unique id, hex (18 bytes = 36 characters) */
#define EA_REGISTRY_SERIAL_MAX 64u  /* certificate serial, hex (20 octets = 40 characters) */
#define EA_REGISTRY_FPR_MAX 64u     /* SHA-256 of the certificate DER, hex */
#define EA_REGISTRY_SOURCE_MAX 23u  /* "provisioned", "manifest", "auto-registered" */

typedef enum ea_registry_status {
    EA_REGISTRY_ACTIVE = 0,
    EA_REGISTRY_REVOKED = 1,
} ea_registry_status;

typedef struct ea_registry_device {
    char device_id[EA_REGISTRY_ID_MAX + 1];
    char unique_id[EA_REGISTRY_UID_MAX + 1];     /* "" when unknown (auto-registered) */
    char serial[EA_REGISTRY_SERIAL_MAX + 1];     /* upper-case hex, as BN_bn2hex writes it */
    char fingerprint[EA_REGISTRY_FPR_MAX + 1];   /* lower-case hex; "" = not bound to one certificate */
    char source[EA_REGISTRY_SOURCE_MAX + 1];
    ea_registry_status status;
    int64_t added_at, first_seen, last_seen, revoked_at;
} ea_registry_device;

/* Is this one of the sources the registry records? */
bool ea_registry_source_ok(const char *source);
const char *ea_registry_status_str(ea_registry_status s); /* "active", "revoked" */

typedef struct ea_registry ea_registry;

#define EA_REGISTRY_CREATE 1u  /* create the file and the schema if missing */
#define EA_REGISTRY_BROKER 2u  /* short busy timeout: the broker's event loop must not stall */

/* Open (and with EA_REGISTRY_CREATE create) the registry at path. On
 * failure err says why and *out is NULL. */
ea_err ea_registry_open(const char *path, unsigned flags, ea_registry **out, char *err, size_t errlen);
/* NULL: no-op. */
void ea_registry_close(ea_registry *r);
/* The message of the last failure on r ("" if none). */
const char *ea_registry_error(const ea_registry *r);

typedef enum ea_registry_change {
    EA_REGISTRY_ADDED,     /* a new device */
    EA_REGISTRY_UPDATED,   /* known device, new certificate (or a unique id it lacked) */
    EA_REGISTRY_UNCHANGED, /* the same certificate was there */
} ea_registry_change;

/* Add a device, or bring a known one up to date. A known id with another
 * certificate (serial or fingerprint) takes the new certificate, unique id
 * and source: it was re-provisioned. The same certificate again changes
 * nothing but a missing unique id, and keeps the source it first came
 * from. The status is never changed here: importing a record again does
 * not bring a revoked device back. d->added_at 0 = now. change (may be
 * NULL) says what happened. */
ea_err ea_registry_add(ea_registry *r, const ea_registry_device *d, ea_registry_change *change);

/* EA_ERR_NOT_FOUND when the id is not registered. */
ea_err ea_registry_get(ea_registry *r, const char *device_id, ea_registry_device *out);

/* Set the status. Revoking gives the device the next number in the
 * revocation sequence (see ea_registry_revoked_since). *changed (may be
 * NULL) is false when the device already had that status.
 * EA_ERR_NOT_FOUND when the id is not registered. */
ea_err ea_registry_set_status(ea_registry *r, const char *device_id, ea_registry_status st, bool *changed);

/* Record that devices were seen: last_seen = when, and first_seen too if it
 * was never set. One transaction for the whole array; unknown ids are
 * skipped. */
typedef struct ea_registry_seen {
    const char *device_id;
    int64_t when;
} ea_registry_seen;
ea_err ea_registry_touch(ea_registry *r, const ea_registry_seen *v, size_t n);

/* Callback for the walks below; a non-EA_OK return stops the walk and is
 * returned. d is valid for the call only. */
typedef ea_err ea_registry_fn(void *ctx, const ea_registry_device *d);

/* Every device, ordered by device id. */
ea_err ea_registry_list(ea_registry *r, ea_registry_fn *fn, void *ctx);
ea_err ea_registry_count(ea_registry *r, size_t *active, size_t *revoked);

/* Devices revoked after position *seq of the revocation sequence, in
 * order; on EA_OK *seq is the newest position (fn may be NULL to only read
 * it). This is how the broker finds, cheaply, whom to disconnect. */
ea_err ea_registry_revoked_since(ea_registry *r, uint64_t *seq, ea_registry_fn *fn, void *ctx);

/* Has another connection (another process) committed a change since the
 * last call? Cheap enough to ask every few milliseconds (in WAL mode it reads
 * the shared-memory index, not the database); the first call answers true. */
ea_err ea_registry_changed(ea_registry *r, bool *changed);

/* ---- registry files (JSON lines written by provisioning) ------------------- */

/* Parse one line of a registry file: a JSON object with the string members
 * device_id (required), unique_id, serial, fingerprint and source (default
 * "provisioned"); other members are ignored, a repeated member is refused.
 * Hex values are normalised (serial upper-case, the others lower-case).
 * EA_ERR_MALFORMED with the reason in err when the line is not such an
 * object or a value is not acceptable. Implemented in import.c. */
ea_err ea_registry_parse_line(const char *line, size_t len, ea_registry_device *d, char *err, size_t errlen);

#endif
