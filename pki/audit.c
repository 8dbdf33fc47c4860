/* The CA's audit log: append-only JSON lines, hash-chained.
 *
 *   {"seq":1,"time":"2025-01-02T03:04:05Z","event":"init",...,"prev":"000...0"}
 *   {"seq":2,"time":"...","event":"issue",...,"prev":"<SHA-256 of line 1>"}
 *
 * "prev" is the SHA-256 of the previous line's bytes without its newline
 * (64 zeros for the first line). The chain shows an edited, inserted,
 * deleted or moved line anywhere but at the very end; the end is anchored
 * by audit.head ({"seq":N,"sha256":"<hash of line N>"}, replaced
 * atomically after each append), so truncating the log or editing its last
 * line shows too. Someone who can rewrite both files and recompute every
 * hash is not stopped by this: copy audit.head somewhere else (a witness)
 * to catch that (docs/PKI.md). */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "common/util.h"
#include "pki/pki_int.h"

#define HEAD_MAX 256u
static const char zero_hash[65] = "0000000000000000000000000000000000000000000000000000000000000000";

/* ---- JSON helpers ---------------------------------------------------------------- */

static bool append(char *buf, size_t cap, const char *s, size_t n)
{
    size_t len = strlen(buf);
    if (len + n + 1 > cap)
        return false;
    memcpy(buf + len, s, n);
    buf[len + n] = '\0';
    return true;
}

/* A comma unless buf is empty or ends an opening or a line. */
static bool sep(char *buf, size_t cap)
{
    size_t len = strlen(buf);
    if (len == 0 || strchr("{,\n", buf[len - 1]))
        return true;
    return append(buf, cap, ",", 1);
}

static bool append_escaped(char *buf, size_t cap, const char *s)
{
    char tmp[8];
    if (!append(buf, cap, "\"", 1))
        return false;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        bool ok;
        if (*p == '"' || *p == '\\') {
            tmp[0] = '\\';
            tmp[1] = (char)*p;
            ok = append(buf, cap, tmp, 2);
        } else if (*p < 0x20 || *p == 0x7F) {
            snprintf(tmp, sizeof tmp, "\\u%04x", *p);
            ok = append(buf, cap, tmp, 6);
        } else {
            ok = append(buf, cap, (const char *)p, 1);
        }
        if (!ok)
            return false;
    }
    return append(buf, cap, "\"", 1);
}

bool pki_json_str(char *buf, size_t cap, const char *key, const char *val)
{
    size_t len = strlen(buf);
    bool ok = sep(buf, cap) && append_escaped(buf, cap, key) && append(buf, cap, ":", 1) &&
              append_escaped(buf, cap, val ? val : "");
    if (!ok)
        buf[len] = '\0'; /* all or nothing */
    return ok;
}

bool pki_json_num(char *buf, size_t cap, const char *key, unsigned long long v)
{
    char num[32];
    size_t len = strlen(buf);
    snprintf(num, sizeof num, ":%llu", v);
    bool ok = sep(buf, cap) && append_escaped(buf, cap, key) && append(buf, cap, num, strlen(num));
    if (!ok)
        buf[len] = '\0';
    return ok;
}

void pki_rfc3339(time_t t, char out[32])
{
    struct tm tm;
    if (!gmtime_r(&t, &tm) || strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        snprintf(out, 32, "1970-01-01T00:00:00Z");
}

/* ---- records ---------------------------------------------------------------------- */

typedef struct record {
    uint64_t seq;
    char prev[65];
} record;

static bool is_hex64(const char *p)
{
    for (int i = 0; i < 64; i++)
        if (!isxdigit((unsigned char)p[i]) || isupper((unsigned char)p[i]))
            return false;
    return true;
}

/* The fixed frame of a line we write: {"seq":N,"time":"<RFC 3339>","event":"...", ... ,"prev":"<64 hex>"} */
static bool parse_record(const char *line, size_t len, record *r)
{
    static const char head[] = "{\"seq\":", tail[] = ",\"prev\":\"";
    const size_t tail_len = sizeof tail - 1 + 64 + 2;
    const char *p = line + sizeof head - 1;
    char *end;

    if (len < sizeof head - 1 + tail_len + 1 || memcmp(line, head, sizeof head - 1) != 0 || !isdigit((unsigned char)*p))
        return false;
    errno = 0;
    unsigned long long seq = strtoull(p, &end, 10);
    if (errno || (size_t)(end - line) > len || *p == '0')
        return false;
    /* ,"time":"YYYY-MM-DDThh:mm:ssZ","event":" */
    if (strncmp(end, ",\"time\":\"", 9) != 0)
        return false;
    const char *t = end + 9;
    if ((size_t)(t - line) + 21 > len || t[4] != '-' || t[7] != '-' || t[10] != 'T' || t[13] != ':' ||
        t[16] != ':' || t[19] != 'Z' || t[20] != '"' || strncmp(t + 21, ",\"event\":\"", 10) != 0)
        return false;
    const char *q = line + len - tail_len;
    if (memcmp(q, tail, sizeof tail - 1) != 0 || !is_hex64(q + sizeof tail - 1) || q[sizeof tail - 1 + 64] != '"' ||
        q[sizeof tail + 64] != '}')
        return false;
    r->seq = seq;
    memcpy(r->prev, q + sizeof tail - 1, 64);
    r->prev[64] = '\0';
    return true;
}

static void sha256_hex(const void *p, size_t n, char out[65], uint8_t raw[32])
{
    uint8_t md[32];
    unsigned len = 0;
    EVP_Digest(p, n, md, &len, EVP_sha256(), NULL);
    ea_hex_encode(md, 32, out);
    if (raw)
        memcpy(raw, md, 32);
}

/* ---- audit.head ----------------------------------------------------------------------- */

typedef struct head {
    bool present;
    uint64_t seq;
    char hash[65];
} head;

static ea_err read_head(const char *dir, head *h)
{
    char path[PATH_MAX];
    uint8_t *buf = NULL;
    size_t len = 0;
    unsigned long long seq;
    char hash[65];
    ea_err rc;

    memset(h, 0, sizeof *h);
    if (snprintf(path, sizeof path, "%s/audit.head", dir) >= (int)sizeof path)
        return EA_ERR_ARG;
    rc = ea_file_read(path, HEAD_MAX, &buf, &len);
    if (rc == EA_ERR_NOT_FOUND)
        return EA_OK;
    if (rc != EA_OK)
        return rc;
    char text[HEAD_MAX + 1];
    memcpy(text, buf, len);
    text[len] = '\0';
    free(buf);
    if (sscanf(text, "{\"seq\":%llu,\"sha256\":\"%64[0-9a-f]\"}", &seq, hash) != 2 || strlen(hash) != 64)
        return EA_ERR_CORRUPT;
    h->present = true;
    h->seq = seq;
    memcpy(h->hash, hash, 65);
    return EA_OK;
}

static ea_err write_head(ea_ca *ca)
{
    char path[PATH_MAX], text[HEAD_MAX], hex[65];
    if (snprintf(path, sizeof path, "%s/audit.head", ca->dir) >= (int)sizeof path)
        return EA_ERR_ARG;
    ea_hex_encode(ca->audit_prev, 32, hex);
    int n = snprintf(text, sizeof text, "{\"seq\":%llu,\"sha256\":\"%s\"}\n", (unsigned long long)ca->audit_seq, hex);
    return ea_file_write_atomic(path, text, (size_t)n, 0644);
}

/* ---- append side ------------------------------------------------------------------------ */

ea_err pki_audit_open(ea_ca *ca, char *err, size_t errlen)
{
    char path[PATH_MAX], hex[65];
    struct stat st;
    head h;
    ea_err rc;
    size_t torn = 0;

    if (snprintf(path, sizeof path, "%s/audit.log", ca->dir) >= (int)sizeof path)
        return EA_ERR_ARG;
    if ((rc = read_head(ca->dir, &h)) != EA_OK) {
        snprintf(err, errlen, "%s/audit.head is not valid", ca->dir);
        return EA_ERR_CORRUPT;
    }
    ca->audit_fd = open(path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (ca->audit_fd < 0 || fstat(ca->audit_fd, &st) != 0) {
        snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
        return EA_ERR_IO;
    }
    ca->audit_seq = 0;
    memset(ca->audit_prev, 0, sizeof ca->audit_prev);
    if (st.st_size > 0) {
        /* Only the tail matters here: the last complete line. */
        size_t want = PKI_AUDIT_LINE_MAX + 2, size = (size_t)st.st_size;
        size_t off = size > want ? size - want : 0, n = size - off;
        char *buf = malloc(n + 1);
        if (!buf)
            return EA_ERR_NO_MEMORY;
        if (pread(ca->audit_fd, buf, n, (off_t)off) != (ssize_t)n) {
            free(buf);
            snprintf(err, errlen, "cannot read %s", path);
            return EA_ERR_IO;
        }
        size_t end = n;
        while (end > 0 && buf[end - 1] != '\n')
            end--;
        torn = n - end; /* bytes after the last newline: an append cut by a crash */
        if (end > 0) {
            size_t start = end - 1;
            while (start > 0 && buf[start - 1] != '\n')
                start--;
            record r;
            if ((start == 0 && off > 0) || !parse_record(buf + start, end - 1 - start, &r)) {
                free(buf);
                snprintf(err, errlen, "%s: the last line is not an audit record", path);
                return EA_ERR_CORRUPT;
            }
            ca->audit_seq = r.seq;
            sha256_hex(buf + start, end - 1 - start, hex, ca->audit_prev);
        }
        free(buf);
    }
    if (h.present) {
        ea_hex_encode(ca->audit_prev, 32, hex);
        if (h.seq > ca->audit_seq) {
            snprintf(err, errlen, "%s ends at seq %llu but audit.head records seq %llu: lines were removed "
                                  "(ea_ca_audit_verify names them); refusing to append",
                     path, (unsigned long long)ca->audit_seq, (unsigned long long)h.seq);
            return EA_ERR_CORRUPT;
        }
        if (h.seq == ca->audit_seq && strcmp(h.hash, hex) != 0) {
            snprintf(err, errlen, "%s: the last line (seq %llu) does not match audit.head: it was edited; refusing "
                                  "to append",
                     path, (unsigned long long)h.seq);
            return EA_ERR_CORRUPT;
        }
    }
    if (torn) {
        /* We hold the CA lock, so nobody is writing: drop the fragment and
         * say so in the log itself. */
        if (ftruncate(ca->audit_fd, st.st_size - (off_t)torn) != 0) {
            snprintf(err, errlen, "cannot repair %s: %s", path, strerror(errno));
            return EA_ERR_IO;
        }
        char fields[64] = "";
        pki_json_num(fields, sizeof fields, "dropped_bytes", torn);
        if ((rc = ea_ca_audit(ca, "recover", fields)) != EA_OK)
            return rc;
    } else if (!h.present || h.seq < ca->audit_seq) {
        if (ca->audit_seq > 0 && write_head(ca) != EA_OK) { /* a crash between append and head */
            snprintf(err, errlen, "cannot write %s/audit.head", ca->dir);
            return EA_ERR_IO;
        }
    }
    return EA_OK;
}

void pki_audit_close(ea_ca *ca)
{
    if (ca->audit_fd >= 0)
        close(ca->audit_fd);
    ca->audit_fd = -1;
}

ea_err pki_audit_sync(ea_ca *ca)
{
    if (ca->audit_fd < 0)
        return EA_ERR_ARG;
    if (fsync(ca->audit_fd) != 0)
        return EA_ERR_IO;
    ca->dirty_audit = false;
    return write_head(ca);
}

static bool event_ok(const char *e)
{
    if (!*e || strlen(e) > 32)
        return false;
    for (; *e; e++)
        if (!islower((unsigned char)*e) && *e != '-' && *e != '_')
            return false;
    return true;
}

ea_err ea_ca_audit(ea_ca *ca, const char *event, const char *fields_json)
{
    char line[PKI_AUDIT_LINE_MAX + 2], now[32], hex[65];
    ea_err rc;

    if (!ca || !event || !event_ok(event) || ca->audit_fd < 0)
        return EA_ERR_ARG;
    /* One record per line: the caller's fields may hold no line break. */
    if (fields_json)
        for (const unsigned char *p = (const unsigned char *)fields_json; *p; p++)
            if (*p < 0x20)
                return EA_ERR_ARG;
    pki_rfc3339(time(NULL), now);
    ea_hex_encode(ca->audit_prev, 32, hex);
    int n = snprintf(line, sizeof line, "{\"seq\":%llu,\"time\":\"%s\",\"event\":\"%s\"%s%s,\"prev\":\"%s\"}\n",
                     (unsigned long long)ca->audit_seq + 1, now, event, fields_json && *fields_json ? "," : "",
                     fields_json ? fields_json : "", hex);
    if (n <= 0 || (size_t)n > PKI_AUDIT_LINE_MAX + 1)
        return EA_ERR_FULL;
    /* One write() of the whole line with O_APPEND: never interleaved. */
    const char *p = line;
    size_t left = (size_t)n;
    while (left > 0) {
        ssize_t w = write(ca->audit_fd, p, left);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return EA_ERR_IO;
        }
        p += w;
        left -= (size_t)w;
    }
    ca->audit_seq++;
    sha256_hex(line, (size_t)n - 1, hex, ca->audit_prev);
    if (ca->batch) {
        ca->dirty_audit = true;
        return EA_OK;
    }
    if (fsync(ca->audit_fd) != 0)
        return EA_ERR_IO;
    rc = write_head(ca);
    return rc;
}

/* ---- verification --------------------------------------------------------------------------- */

ea_err ea_ca_audit_verify(const char *dir, size_t *lines, char *err, size_t errlen)
{
    char path[PATH_MAX], prev[65], hex[65], head_line_hash[65] = "";
    char *line = NULL;
    size_t cap = 0, count = 0;
    ssize_t len;
    head h;
    ea_err rc = EA_ERR_CORRUPT;
    FILE *f;

    if (err && errlen)
        err[0] = '\0';
    if (lines)
        *lines = 0;
    if (!dir)
        return EA_ERR_ARG;
    if (snprintf(path, sizeof path, "%s/audit.log", dir) >= (int)sizeof path)
        return EA_ERR_ARG;
    if (read_head(dir, &h) != EA_OK) {
        snprintf(err, errlen, "audit.head is not valid");
        return EA_ERR_CORRUPT;
    }
    if (!(f = fopen(path, "re"))) {
        snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
        return errno == ENOENT ? EA_ERR_NOT_FOUND : EA_ERR_IO;
    }
    memcpy(prev, zero_hash, sizeof prev);
    while ((len = getline(&line, &cap, f)) > 0) {
        size_t i = ++count;
        record r;
        if (line[len - 1] != '\n') {
            snprintf(err, errlen, "line %zu: incomplete (no newline: an append cut short)", i);
            goto out;
        }
        line[--len] = '\0';
        if ((size_t)len > PKI_AUDIT_LINE_MAX || memchr(line, 0, (size_t)len) || !parse_record(line, (size_t)len, &r)) {
            snprintf(err, errlen, "line %zu: not an audit record (edited?)", i);
            goto out;
        }
        /* The order of the checks decides which line gets named: a gap or
         * a jump in seq means lines went missing or moved; a good seq with
         * a wrong prev means the line before was edited. */
        if (r.seq != i) {
            if (r.seq > i)
                snprintf(err, errlen, "line %zu: seq %llu where %zu was expected: line(s) deleted or moved before it", i,
                         (unsigned long long)r.seq, i);
            else
                snprintf(err, errlen, "line %zu: seq %llu where %zu was expected: a line inserted or moved here", i,
                         (unsigned long long)r.seq, i);
            goto out;
        }
        if (strcmp(r.prev, prev) != 0) {
            if (i == 1)
                snprintf(err, errlen, "line 1: prev is not 64 zeros (the log does not start here)");
            else
                snprintf(err, errlen, "line %zu was edited: its SHA-256 is not the prev recorded in line %zu", i - 1, i);
            goto out;
        }
        sha256_hex(line, (size_t)len, hex, NULL);
        memcpy(prev, hex, sizeof prev);
        if (h.present && r.seq == h.seq)
            memcpy(head_line_hash, hex, sizeof hex);
    }
    if (ferror(f)) {
        snprintf(err, errlen, "cannot read %s", path);
        rc = EA_ERR_IO;
        goto out;
    }
    if (h.present) {
        if (h.seq > count) {
            snprintf(err, errlen, "line %llu missing: the log ends at line %zu but audit.head records seq %llu (lines "
                                  "deleted at the end)",
                     (unsigned long long)count + 1, count, (unsigned long long)h.seq);
            goto out;
        }
        if (h.seq > 0 && strcmp(head_line_hash, h.hash) != 0) {
            snprintf(err, errlen, "line %llu was edited: its SHA-256 is not the one recorded in audit.head",
                     (unsigned long long)h.seq);
            goto out;
        }
    } else if (count > 0) {
        snprintf(err, errlen, "audit.head is missing: the end of the log (line %zu) cannot be checked", count);
        goto out;
    }
    if (lines)
        *lines = count;
    rc = EA_OK;
out:
    if (rc != EA_OK && lines)
        *lines = count;
    free(line);
    fclose(f);
    return rc;
}
