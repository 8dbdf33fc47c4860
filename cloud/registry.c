/* The device registry in SQLite (see registry.h for the contract).
 *
 * Two processes use the file at once: the broker (a single-threaded event
 * loop that must not stall) and the CLI. WAL mode lets readers run while a
 * writer commits; the busy timeout makes a writer wait for the other one.
 * The broker's timeout is short, and its only frequent write (last_seen) is
 * batched by the plugin, so a CLI transaction can delay it by milliseconds
 * at most. */
#include "cloud/registry.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <sqlite3.h>

#define BUSY_CLI_MS 5000
#define BUSY_BROKER_MS 250
#define SCHEMA_VERSION 1

struct ea_registry {
    sqlite3 *db;
    sqlite3_stmt *get, *insert, *update, *status, *revoke, *touch, *list, *since, *count, *version;
    int64_t data_version;
    bool version_read;
    char msg[256];
};

static const char schema[] =
    "CREATE TABLE IF NOT EXISTS devices ("
    " device_id   TEXT PRIMARY KEY NOT NULL CHECK (length(device_id) BETWEEN 1 AND 64),"
    " unique_id   TEXT NOT NULL DEFAULT '',"
    " serial      TEXT NOT NULL DEFAULT '',"
    " fingerprint TEXT NOT NULL DEFAULT '',"
    " status      TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active','revoked')),"
    " source      TEXT NOT NULL CHECK (source IN ('provisioned','manifest','auto-registered')),"
    " added_at    INTEGER NOT NULL,"
    " first_seen  INTEGER,"
    " last_seen   INTEGER,"
    " revoked_at  INTEGER,"
    " revoked_seq INTEGER"
    ") WITHOUT ROWID;"
    "CREATE INDEX IF NOT EXISTS devices_by_revocation ON devices(revoked_seq) WHERE revoked_seq IS NOT NULL;"
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY NOT NULL, value INTEGER NOT NULL) WITHOUT ROWID;"
    "INSERT OR IGNORE INTO meta VALUES ('schema_version', 1), ('revocation_seq', 0);";

#define COLS "device_id, unique_id, serial, fingerprint, status, source, added_at, " \
             "ifnull(first_seen,0), ifnull(last_seen,0), ifnull(revoked_at,0)"

static const struct stmt_def {
    size_t off;
    const char *sql;
} stmts[] = {
    { offsetof(ea_registry, get), "SELECT " COLS " FROM devices WHERE device_id = ?1" },
    { offsetof(ea_registry, insert),
      "INSERT INTO devices (device_id, unique_id, serial, fingerprint, source, added_at) VALUES (?1,?2,?3,?4,?5,?6)" },
    { offsetof(ea_registry, update),
      "UPDATE devices SET unique_id = ?2, serial = ?3, fingerprint = ?4, source = ?5 WHERE device_id = ?1" },
    { offsetof(ea_registry, status),
      "UPDATE devices SET status = 'active', revoked_at = NULL, revoked_seq = NULL "
      "WHERE device_id = ?1 AND status <> 'active'" },
    /* The sequence number and the status change in one statement pair of one
     * transaction (see set_status), so a reader never sees one without the other. */
    { offsetof(ea_registry, revoke),
      "UPDATE devices SET status = 'revoked', revoked_at = ?2, "
      " revoked_seq = (SELECT value FROM meta WHERE key = 'revocation_seq') "
      "WHERE device_id = ?1 AND status <> 'revoked'" },
    { offsetof(ea_registry, touch),
      "UPDATE devices SET last_seen = max(ifnull(last_seen,0), ?2), first_seen = ifnull(first_seen, ?2) "
      "WHERE device_id = ?1" },
    { offsetof(ea_registry, list), "SELECT " COLS " FROM devices ORDER BY device_id" },
    { offsetof(ea_registry, since),
      "SELECT " COLS ", revoked_seq FROM devices WHERE revoked_seq > ?1 AND status = 'revoked' ORDER BY revoked_seq" },
    { offsetof(ea_registry, count),
      "SELECT ifnull(sum(status = 'active'),0), ifnull(sum(status = 'revoked'),0) FROM devices" },
    { offsetof(ea_registry, version), "PRAGMA data_version" },
};

static const char *const sources[] = { "provisioned", "manifest", "auto-registered" };

bool ea_registry_source_ok(const char *source)
{
    for (size_t i = 0; source && i < sizeof sources / sizeof sources[0]; i++)
        if (!strcmp(source, sources[i]))
            return true;
    return false;
}

const char *ea_registry_status_str(ea_registry_status s)
{
    return s == EA_REGISTRY_REVOKED ? "revoked" : "active";
}

__attribute__((format(printf, 2, 3))) static void set_msg(ea_registry *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->msg, sizeof r->msg, fmt, ap);
    va_end(ap);
}

/* Map a failed SQLite call to our error, keeping its message. */
static ea_err db_fail(ea_registry *r, int sc, const char *what)
{
    set_msg(r, "%s: %s", what, sqlite3_errmsg(r->db));
    switch (sc & 0xFF) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED: return EA_ERR_LOCKED;
    case SQLITE_NOMEM: return EA_ERR_NO_MEMORY;
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB: return EA_ERR_CORRUPT;
    case SQLITE_FULL: return EA_ERR_FULL;
    case SQLITE_CONSTRAINT: return EA_ERR_ARG;
    case SQLITE_IOERR:
    case SQLITE_CANTOPEN:
    case SQLITE_READONLY:
    case SQLITE_PERM: return EA_ERR_IO;
    default: return EA_ERR_INTERNAL;
    }
}

const char *ea_registry_error(const ea_registry *r)
{
    return r ? r->msg : "";
}

void ea_registry_close(ea_registry *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < sizeof stmts / sizeof stmts[0]; i++)
        sqlite3_finalize(*(sqlite3_stmt **)((char *)r + stmts[i].off));
    sqlite3_close(r->db);
    free(r);
}

static ea_err exec(ea_registry *r, const char *sql, const char *what)
{
    int sc = sqlite3_exec(r->db, sql, NULL, NULL, NULL);
    return sc == SQLITE_OK ? EA_OK : db_fail(r, sc, what);
}

static ea_err check_schema(ea_registry *r)
{
    sqlite3_stmt *st = NULL;
    ea_err rc = EA_ERR_CORRUPT;
    int sc = sqlite3_prepare_v2(r->db, "SELECT value FROM meta WHERE key = 'schema_version'", -1, &st, NULL);

    if (sc != SQLITE_OK)
        return db_fail(r, sc, "not a device registry");
    sc = sqlite3_step(st);
    if (sc == SQLITE_ROW && sqlite3_column_int64(st, 0) == SCHEMA_VERSION)
        rc = EA_OK;
    else if (sc == SQLITE_ROW)
        set_msg(r, "registry schema version %lld, this program knows %d", (long long)sqlite3_column_int64(st, 0),
                SCHEMA_VERSION);
    else
        rc = db_fail(r, sc, "not a device registry");
    sqlite3_finalize(st);
    return rc;
}

ea_err ea_registry_open(const char *path, unsigned flags, ea_registry **out, char *err, size_t errlen)
{
    ea_registry *r = NULL;
    ea_err rc = EA_ERR_INTERNAL;
    int sc, oflags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX;

    if (err && errlen)
        err[0] = '\0';
    if (!out || !path || !*path)
        return EA_ERR_ARG;
    *out = NULL;
    if (!(r = calloc(1, sizeof *r))) {
        if (err && errlen)
            snprintf(err, errlen, "out of memory");
        return EA_ERR_NO_MEMORY;
    }
    if (flags & EA_REGISTRY_CREATE)
        oflags |= SQLITE_OPEN_CREATE;
    sc = sqlite3_open_v2(path, &r->db, oflags, NULL);
    if (sc != SQLITE_OK) {
        rc = r->db ? db_fail(r, sc, path) : EA_ERR_NO_MEMORY;
        if (sc == SQLITE_CANTOPEN)
            rc = EA_ERR_NOT_FOUND;
        goto out;
    }
    sqlite3_extended_result_codes(r->db, 1);
    sqlite3_busy_timeout(r->db, (flags & EA_REGISTRY_BROKER) ? BUSY_BROKER_MS : BUSY_CLI_MS);
    /* WAL is a property of the file: the first opener sets it for everyone.
     * NORMAL sync in WAL mode loses at most the last commits on power loss,
     * never consistency; a revocation is re-applied by running it again. */
    if ((rc = exec(r, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;", path)) != EA_OK)
        goto out;
    if (flags & EA_REGISTRY_CREATE) {
        if ((rc = exec(r, "BEGIN IMMEDIATE", path)) != EA_OK)
            goto out;
        if ((rc = exec(r, schema, "cannot create the registry schema")) != EA_OK) {
            (void)exec(r, "ROLLBACK", path);
            goto out;
        }
        if ((rc = exec(r, "COMMIT", path)) != EA_OK)
            goto out;
    }
    if ((rc = check_schema(r)) != EA_OK)
        goto out;
    for (size_t i = 0; i < sizeof stmts / sizeof stmts[0]; i++) {
        sqlite3_stmt **st = (sqlite3_stmt **)((char *)r + stmts[i].off);
        if ((sc = sqlite3_prepare_v3(r->db, stmts[i].sql, -1, SQLITE_PREPARE_PERSISTENT, st, NULL)) != SQLITE_OK) {
            rc = db_fail(r, sc, "cannot prepare a registry statement");
            goto out;
        }
    }
    *out = r;
    return EA_OK;
out:
    if (err && errlen)
        snprintf(err, errlen, "%s", r->msg[0] ? r->msg : ea_err_str(rc));
    ea_registry_close(r);
    return rc;
}

static void copy_col(sqlite3_stmt *st, int col, char *dst, size_t cap)
{
    const unsigned char *t = sqlite3_column_text(st, col);
    int n = sqlite3_column_bytes(st, col);

    /* The schema does not bound every column; a value written by another
     * tool that does not fit comes out empty rather than cut. */
    if (!t || n < 0 || (size_t)n >= cap)
        n = 0;
    if (n)
        memcpy(dst, t, (size_t)n);
    dst[n] = '\0';
}

static void read_row(sqlite3_stmt *st, ea_registry_device *d)
{
    char status[16];

    memset(d, 0, sizeof *d);
    copy_col(st, 0, d->device_id, sizeof d->device_id);
    copy_col(st, 1, d->unique_id, sizeof d->unique_id);
    copy_col(st, 2, d->serial, sizeof d->serial);
    copy_col(st, 3, d->fingerprint, sizeof d->fingerprint);
    copy_col(st, 4, status, sizeof status);
    copy_col(st, 5, d->source, sizeof d->source);
    /* Anything but "active" is treated as revoked: fail closed. */
    d->status = strcmp(status, "active") ? EA_REGISTRY_REVOKED : EA_REGISTRY_ACTIVE;
    d->added_at = sqlite3_column_int64(st, 6);
    d->first_seen = sqlite3_column_int64(st, 7);
    d->last_seen = sqlite3_column_int64(st, 8);
    d->revoked_at = sqlite3_column_int64(st, 9);
}

static bool fits(const char *s, size_t max)
{
    return s && strnlen(s, max + 1) <= max;
}

static bool device_ok(const ea_registry_device *d)
{
    return d && fits(d->device_id, EA_REGISTRY_ID_MAX) && d->device_id[0] &&
           fits(d->unique_id, EA_REGISTRY_UID_MAX) && fits(d->serial, EA_REGISTRY_SERIAL_MAX) &&
           fits(d->fingerprint, EA_REGISTRY_FPR_MAX) && ea_registry_source_ok(d->source);
}

/* Run a statement that returns no rows; *changes (may be NULL) gets the
 * number of rows it changed. The statement is reset either way. */
static ea_err run(ea_registry *r, sqlite3_stmt *st, const char *what, int *changes)
{
    int sc = sqlite3_step(st);
    ea_err rc = sc == SQLITE_DONE ? EA_OK : db_fail(r, sc, what);

    if (rc == EA_OK && changes)
        *changes = sqlite3_changes(r->db);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return rc;
}

static void bind_text(sqlite3_stmt *st, int i, const char *s)
{
    sqlite3_bind_text(st, i, s, -1, SQLITE_STATIC);
}

ea_err ea_registry_get(ea_registry *r, const char *device_id, ea_registry_device *out)
{
    ea_err rc;
    int sc;

    if (!r || !device_id || !out)
        return EA_ERR_ARG;
    bind_text(r->get, 1, device_id);
    sc = sqlite3_step(r->get);
    if (sc == SQLITE_ROW) {
        read_row(r->get, out);
        rc = EA_OK;
    } else if (sc == SQLITE_DONE) {
        set_msg(r, "device '%.64s' is not registered", device_id);
        rc = EA_ERR_NOT_FOUND;
    } else {
        rc = db_fail(r, sc, "cannot read the registry");
    }
    sqlite3_reset(r->get);
    sqlite3_clear_bindings(r->get);
    return rc;
}

static bool same_cert(const ea_registry_device *a, const ea_registry_device *b)
{
    return !strcasecmp(a->serial, b->serial) && !strcasecmp(a->fingerprint, b->fingerprint);
}

static ea_err update(ea_registry *r, const ea_registry_device *d, const char *source)
{
    bind_text(r->update, 1, d->device_id);
    bind_text(r->update, 2, d->unique_id);
    bind_text(r->update, 3, d->serial);
    bind_text(r->update, 4, d->fingerprint);
    bind_text(r->update, 5, source);
    return run(r, r->update, "cannot update the device", NULL);
}

ea_err ea_registry_add(ea_registry *r, const ea_registry_device *d, ea_registry_change *change)
{
    ea_registry_device old;
    ea_registry_change ch = EA_REGISTRY_UNCHANGED;
    ea_err rc;

    if (!r)
        return EA_ERR_ARG;
    if (!device_ok(d)) {
        set_msg(r, "invalid device record");
        return EA_ERR_ARG;
    }
    if ((rc = exec(r, "BEGIN IMMEDIATE", "cannot write the registry")) != EA_OK)
        return rc;
    rc = ea_registry_get(r, d->device_id, &old);
    if (rc == EA_ERR_NOT_FOUND) {
        bind_text(r->insert, 1, d->device_id);
        bind_text(r->insert, 2, d->unique_id);
        bind_text(r->insert, 3, d->serial);
        bind_text(r->insert, 4, d->fingerprint);
        bind_text(r->insert, 5, d->source);
        sqlite3_bind_int64(r->insert, 6, d->added_at ? d->added_at : (int64_t)time(NULL));
        rc = run(r, r->insert, "cannot add the device", NULL);
        ch = EA_REGISTRY_ADDED;
    } else if (rc == EA_OK && same_cert(&old, d)) {
        /* The same certificate from another channel (a manifest after the
         * registry file, say): the record keeps the source it came from,
         * and only learns a unique id it did not have. */
        if (!old.unique_id[0] && d->unique_id[0]) {
            rc = update(r, d, old.source);
            ch = EA_REGISTRY_UPDATED;
        }
    } else if (rc == EA_OK) {
        /* A new certificate for a known id: re-provisioned. */
        rc = update(r, d, d->source);
        ch = EA_REGISTRY_UPDATED;
    }
    if (rc == EA_OK)
        rc = exec(r, "COMMIT", "cannot commit to the registry");
    if (rc != EA_OK)
        (void)sqlite3_exec(r->db, "ROLLBACK", NULL, NULL, NULL);
    else if (change)
        *change = ch;
    return rc;
}

ea_err ea_registry_set_status(ea_registry *r, const char *device_id, ea_registry_status st, bool *changed)
{
    ea_registry_device d;
    int n = 0;
    ea_err rc;

    if (!r || !device_id || (st != EA_REGISTRY_ACTIVE && st != EA_REGISTRY_REVOKED))
        return EA_ERR_ARG;
    if ((rc = exec(r, "BEGIN IMMEDIATE", "cannot write the registry")) != EA_OK)
        return rc;
    if ((rc = ea_registry_get(r, device_id, &d)) != EA_OK)
        goto out;
    if (st == EA_REGISTRY_REVOKED) {
        if (d.status != EA_REGISTRY_REVOKED &&
            (rc = exec(r, "UPDATE meta SET value = value + 1 WHERE key = 'revocation_seq'",
                       "cannot number the revocation")) != EA_OK)
            goto out;
        bind_text(r->revoke, 1, device_id);
        sqlite3_bind_int64(r->revoke, 2, (int64_t)time(NULL));
        rc = run(r, r->revoke, "cannot revoke the device", &n);
    } else {
        bind_text(r->status, 1, device_id);
        rc = run(r, r->status, "cannot reinstate the device", &n);
    }
    if (rc == EA_OK)
        rc = exec(r, "COMMIT", "cannot commit to the registry");
out:
    if (rc != EA_OK)
        (void)sqlite3_exec(r->db, "ROLLBACK", NULL, NULL, NULL);
    else if (changed)
        *changed = n > 0;
    return rc;
}

ea_err ea_registry_touch(ea_registry *r, const ea_registry_seen *v, size_t n)
{
    ea_err rc = EA_OK;

    if (!r || (n && !v))
        return EA_ERR_ARG;
    if (n == 0)
        return EA_OK;
    if ((rc = exec(r, "BEGIN IMMEDIATE", "cannot write the registry")) != EA_OK)
        return rc;
    for (size_t i = 0; i < n && rc == EA_OK; i++) {
        if (!v[i].device_id)
            continue;
        bind_text(r->touch, 1, v[i].device_id);
        sqlite3_bind_int64(r->touch, 2, v[i].when);
        rc = run(r, r->touch, "cannot record last_seen", NULL);
    }
    if (rc == EA_OK)
        rc = exec(r, "COMMIT", "cannot commit to the registry");
    if (rc != EA_OK)
        (void)sqlite3_exec(r->db, "ROLLBACK", NULL, NULL, NULL);
    return rc;
}

/* Step a SELECT of COLS, calling fn per row; *last_extra (may be NULL)
 * receives column 10 of the last row. */
static ea_err walk(ea_registry *r, sqlite3_stmt *st, ea_registry_fn *fn, void *ctx, int64_t *last_extra)
{
    ea_registry_device d;
    ea_err rc = EA_OK;
    int sc;

    while ((sc = sqlite3_step(st)) == SQLITE_ROW) {
        read_row(st, &d);
        if (last_extra)
            *last_extra = sqlite3_column_int64(st, 10);
        if (fn && (rc = fn(ctx, &d)) != EA_OK)
            break;
    }
    if (rc == EA_OK && sc != SQLITE_DONE)
        rc = db_fail(r, sc, "cannot read the registry");
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return rc;
}

ea_err ea_registry_list(ea_registry *r, ea_registry_fn *fn, void *ctx)
{
    if (!r || !fn)
        return EA_ERR_ARG;
    return walk(r, r->list, fn, ctx, NULL);
}

ea_err ea_registry_count(ea_registry *r, size_t *active, size_t *revoked)
{
    ea_err rc = EA_OK;
    int sc;

    if (!r)
        return EA_ERR_ARG;
    sc = sqlite3_step(r->count);
    if (sc == SQLITE_ROW) {
        if (active)
            *active = (size_t)sqlite3_column_int64(r->count, 0);
        if (revoked)
            *revoked = (size_t)sqlite3_column_int64(r->count, 1);
    } else {
        rc = db_fail(r, sc, "cannot count the devices");
    }
    sqlite3_reset(r->count);
    return rc;
}

ea_err ea_registry_revoked_since(ea_registry *r, uint64_t *seq, ea_registry_fn *fn, void *ctx)
{
    int64_t last = 0;
    ea_err rc;

    if (!r || !seq || *seq > INT64_MAX)
        return EA_ERR_ARG;
    last = (int64_t)*seq;
    sqlite3_bind_int64(r->since, 1, (int64_t)*seq);
    rc = walk(r, r->since, fn, ctx, &last);
    /* A stopped walk leaves *seq alone: the caller retries from there. */
    if (rc == EA_OK && last > 0)
        *seq = (uint64_t)last;
    return rc;
}

ea_err ea_registry_changed(ea_registry *r, bool *changed)
{
    int64_t v;
    int sc;

    if (!r || !changed)
        return EA_ERR_ARG;
    sc = sqlite3_step(r->version);
    if (sc != SQLITE_ROW) {
        ea_err rc = db_fail(r, sc, "cannot read the registry version");
        sqlite3_reset(r->version);
        return rc;
    }
    v = sqlite3_column_int64(r->version, 0);
    sqlite3_reset(r->version);
    *changed = !r->version_read || v != r->data_version;
    r->data_version = v;
    r->version_read = true;
    return EA_OK;
}
