/* One line of a registry file → a registry record (see registry.h).
 *
 * The lines come from another program (provisioning) and maybe from another
 * site, so the reader is strict: one JSON object, members we know must be
 * strings and appear once, nesting is bounded, and nothing may follow the
 * object. Unknown members (attested, time, ...) are skipped. */
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "cloud/jail.h"
#include "cloud/registry.h"

#define MAX_DEPTH 8
#define STR_MAX 256u

typedef struct cur {
    const char *p, *end;
} cur;

__attribute__((format(printf, 3, 4))) static void fail(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    if (!err || !errlen)
        return;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static void ws(cur *c)
{
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\r' || *c->p == '\n'))
        c->p++;
}

static bool take(cur *c, char ch)
{
    ws(c);
    if (c->p < c->end && *c->p == ch) {
        c->p++;
        return true;
    }
    return false;
}

static int hexv(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

static bool hex4(cur *c, unsigned *v)
{
    *v = 0;
    if (c->end - c->p < 4)
        return false;
    for (int i = 0; i < 4; i++) {
        int h = hexv(c->p[i]);
        if (h < 0)
            return false;
        *v = (*v << 4) | (unsigned)h;
    }
    c->p += 4;
    return true;
}

/* A JSON string into out (cap bytes, NUL-terminated); out NULL skips it.
 * Refuses raw control bytes, bad escapes, lone surrogates, NUL (\u0000)
 * and strings longer than cap - 1. */
static bool string(cur *c, char *out, size_t cap)
{
    size_t n = 0;

#define EMIT(b)                                \
    do {                                       \
        if (out) {                             \
            if (n + 1 >= cap)                  \
                return false;                  \
            out[n] = (char)(b);                \
        }                                      \
        n++;                                   \
    } while (0)

    if (!take(c, '"'))
        return false;
    while (c->p < c->end && *c->p != '"') {
        unsigned char ch = (unsigned char)*c->p++;
        unsigned cp;

        if (ch < 0x20)
            return false;
        if (ch != '\\') {
            EMIT(ch);
            continue;
        }
        if (c->p >= c->end)
            return false;
        switch (*c->p++) {
        case '"': EMIT('"'); break;
        case '\\': EMIT('\\'); break;
        case '/': EMIT('/'); break;
        case 'b': EMIT('\b'); break;
        case 'f': EMIT('\f'); break;
        case 'n': EMIT('\n'); break;
        case 'r': EMIT('\r'); break;
        case 't': EMIT('\t'); break;
        case 'u':
            if (!hex4(c, &cp) || cp == 0 || (cp >= 0xDC00 && cp <= 0xDFFF))
                return false;
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                unsigned lo;
                if (c->end - c->p < 2 || c->p[0] != '\\' || c->p[1] != 'u')
                    return false;
                c->p += 2;
                if (!hex4(c, &lo) || lo < 0xDC00 || lo > 0xDFFF)
                    return false;
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            }
            if (cp < 0x80) {
                EMIT(cp);
            } else if (cp < 0x800) {
                EMIT(0xC0 | (cp >> 6));
                EMIT(0x80 | (cp & 0x3F));
            } else if (cp < 0x10000) {
                EMIT(0xE0 | (cp >> 12));
                EMIT(0x80 | ((cp >> 6) & 0x3F));
                EMIT(0x80 | (cp & 0x3F));
            } else {
                EMIT(0xF0 | (cp >> 18));
                EMIT(0x80 | ((cp >> 12) & 0x3F));
                EMIT(0x80 | ((cp >> 6) & 0x3F));
                EMIT(0x80 | (cp & 0x3F));
            }
            break;
        default: return false;
        }
    }
#undef EMIT
    if (c->p >= c->end)
        return false;
    c->p++; /* closing quote */
    if (out)
        out[n] = '\0';
    return true;
}

/* Skip any JSON value (for members we do not use). */
static bool skip_value(cur *c, int depth)
{
    ws(c);
    if (c->p >= c->end || depth > MAX_DEPTH)
        return false;
    switch (*c->p) {
    case '"': return string(c, NULL, 0);
    case '{':
    case '[': {
        char close = *c->p == '{' ? '}' : ']';
        bool obj = close == '}';
        c->p++;
        if (take(c, close))
            return true;
        do {
            if (obj && (!string(c, NULL, 0) || !take(c, ':')))
                return false;
            if (!skip_value(c, depth + 1))
                return false;
        } while (take(c, ','));
        return take(c, close);
    }
    default: {
        /* true, false, null or a number: a run of these characters. */
        const char *s = c->p;
        while (c->p < c->end && (isalnum((unsigned char)*c->p) || (*c->p && strchr("+-.", *c->p))))
            c->p++;
        size_t n = (size_t)(c->p - s);
        if (n == 0)
            return false;
        if ((n == 4 && !memcmp(s, "true", 4)) || (n == 5 && !memcmp(s, "false", 5)) || (n == 4 && !memcmp(s, "null", 4)))
            return true;
        return strchr("-0123456789", s[0]) != NULL;
    }
    }
}

static const char *const known[] = { "device_id", "unique_id", "serial", "fingerprint", "source" };
enum { K_DEVICE, K_UID, K_SERIAL, K_FPR, K_SOURCE, K_COUNT };

static bool hex_norm(char *s, bool upper, bool allow_minus)
{
    char *p = s;
    if (allow_minus && *p == '-')
        p++;
    for (; *p; p++) {
        if (hexv(*p) < 0)
            return false;
        *p = (char)(upper ? toupper((unsigned char)*p) : tolower((unsigned char)*p));
    }
    return true;
}

static bool put_field(char *dst, size_t cap, const char *val)
{
    if (strlen(val) >= cap)
        return false;
    memcpy(dst, val, strlen(val) + 1);
    return true;
}

ea_err ea_registry_parse_line(const char *line, size_t len, ea_registry_device *d, char *err, size_t errlen)
{
    cur c = { line, line + len };
    char key[64], val[STR_MAX];
    bool seen[K_COUNT] = { false };

    if (err && errlen)
        err[0] = '\0';
    if (!line || !d)
        return EA_ERR_ARG;
    memset(d, 0, sizeof *d);
    snprintf(d->source, sizeof d->source, "provisioned");
    if (!take(&c, '{')) {
        fail(err, errlen, "not a JSON object");
        return EA_ERR_MALFORMED;
    }
    if (!take(&c, '}')) {
        do {
            int k = -1;
            if (!string(&c, key, sizeof key) || !take(&c, ':')) {
                fail(err, errlen, "bad member name");
                return EA_ERR_MALFORMED;
            }
            for (int i = 0; i < K_COUNT; i++)
                if (!strcmp(key, known[i]))
                    k = i;
            if (k < 0) {
                if (!skip_value(&c, 1)) {
                    fail(err, errlen, "bad value for \"%.32s\"", key);
                    return EA_ERR_MALFORMED;
                }
                continue;
            }
            if (seen[k]) {
                fail(err, errlen, "\"%s\" appears twice", key);
                return EA_ERR_MALFORMED;
            }
            seen[k] = true;
            ws(&c);
            if (!string(&c, val, sizeof val)) {
                fail(err, errlen, "\"%s\" must be a string of at most %u bytes", key, STR_MAX - 1);
                return EA_ERR_MALFORMED;
            }
            bool ok;
            switch (k) {
            case K_DEVICE: ok = put_field(d->device_id, sizeof d->device_id, val); break;
            case K_UID: ok = hex_norm(val, false, false) && put_field(d->unique_id, sizeof d->unique_id, val); break;
            case K_SERIAL: ok = hex_norm(val, true, true) && put_field(d->serial, sizeof d->serial, val); break;
            case K_FPR:
                ok = (val[0] == '\0' || strlen(val) == 64) && hex_norm(val, false, false) &&
                     put_field(d->fingerprint, sizeof d->fingerprint, val);
                break;
            default: ok = ea_registry_source_ok(val) && put_field(d->source, sizeof d->source, val); break;
            }
            if (!ok) {
                fail(err, errlen, "unacceptable \"%s\"", key);
                return EA_ERR_MALFORMED;
            }
        } while (take(&c, ','));
        if (!take(&c, '}')) {
            fail(err, errlen, "expected ',' or '}'");
            return EA_ERR_MALFORMED;
        }
    }
    ws(&c);
    if (c.p != c.end) {
        fail(err, errlen, "text after the object");
        return EA_ERR_MALFORMED;
    }
    if (!seen[K_DEVICE] || !ea_jail_id_ok(d->device_id, strlen(d->device_id))) {
        fail(err, errlen, seen[K_DEVICE] ? "device_id is not a usable identity (1-64 printable ASCII, no + # / or "
                                           "leading $)"
                                         : "no device_id");
        return EA_ERR_MALFORMED;
    }
    return EA_OK;
}
