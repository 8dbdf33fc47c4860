/* The cloud's audit trail: one JSON object per line, appended to a file.
 *
 * Written by the broker plugin (every connection attempt, jail violations,
 * sessions dropped) and by the CLI (operator revocations), both at once:
 * each line goes out in one write(2) on an O_APPEND descriptor, so lines
 * from the two processes never interleave. docs/CLOUD.md lists the events.
 *
 * Building a line never fails: a value that does not fit is left out and
 * the line says "truncated":true. Text is escaped for JSON; bytes that are
 * not UTF-8 become U+FFFD, so a certificate subject or client id chosen by
 * an attacker cannot break the line or the reader. */
#ifndef EA_CLOUD_AUDIT_H
#define EA_CLOUD_AUDIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "edgeauth/err.h"

#define EA_AUDIT_LINE_MAX 8192u  /* one event, newline included */
#define EA_AUDIT_VALUE_MAX 512u  /* bytes of one string value before escaping; longer ones are cut */

typedef struct ea_audit_line {
    char buf[EA_AUDIT_LINE_MAX];
    size_t len;
    bool truncated;
} ea_audit_line;

/* Start a line: {"time":"<RFC 3339 UTC, milliseconds>","event":"<event>" */
void ea_audit_begin(ea_audit_line *l, const char *event);
/* ,"key":"value" — value NULL writes null. Keys are our own constants. */
void ea_audit_str(ea_audit_line *l, const char *key, const char *value);
void ea_audit_int(ea_audit_line *l, const char *key, long long value);
void ea_audit_bool(ea_audit_line *l, const char *key, bool value);
/* Close the line ("}\n"); returns its text, NUL-terminated (borrowed from l). */
const char *ea_audit_end(ea_audit_line *l, size_t *len);

typedef struct ea_audit ea_audit;

/* Open path for appending (created 0640 if missing). */
ea_err ea_audit_open(const char *path, ea_audit **out, char *err, size_t errlen);
/* Reopen the same path (after log rotation). On failure the old file stays in use. */
ea_err ea_audit_reopen(ea_audit *a);
/* NULL: no-op. */
void ea_audit_close(ea_audit *a);
/* End l if not ended yet and append it. a NULL: the line is dropped. */
ea_err ea_audit_write(ea_audit *a, ea_audit_line *l);

/* Append to out (capacity cap, current length *len) the JSON string
 * literal of s (quotes included), at most max bytes of s. false when it
 * does not fit (out and *len are then unchanged). Exposed for tests. */
bool ea_audit_json_string(char *out, size_t cap, size_t *len, const char *s, size_t max);

#endif
