#include "tests/testutil.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/util.h"

char *tu_tmpdir(const char *tag)
{
    const char *base = getenv("TMPDIR");
    char path[512];
    snprintf(path, sizeof path, "%s/edgeauth-%s-XXXXXX", base && *base ? base : "/tmp", tag);
    char *d = mkdtemp(path);
    assert_non_null(d);
    return strdup(d);
}

void tu_rmrf(const char *path)
{
    struct stat st;
    if (!path || lstat(path, &st) != 0)
        return;
    if (S_ISDIR(st.st_mode)) {
        DIR *d = opendir(path);
        if (d) {
            struct dirent *e;
            while ((e = readdir(d)) != NULL) {
                if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
                    continue;
                char sub[1024];
                snprintf(sub, sizeof sub, "%s/%s", path, e->d_name);
                tu_rmrf(sub);
            }
            closedir(d);
        }
        rmdir(path);
    } else {
        unlink(path);
    }
}

uint8_t *tu_hex(const char *hex, size_t *len)
{
    size_t cap = strlen(hex) / 2 + 1;
    uint8_t *b = malloc(cap);
    assert_non_null(b);
    *len = cap;
    assert_int_equal(ea_hex_decode(hex, b, len), EA_OK);
    return b;
}

static void chip_open(tu_chip *c)
{
    char err[256] = "";
    /* Tests reset chips with DeleteAll; the default refusal has its own test. */
    ea_emu_opts o = { .allow_factory_reset = 1 };
    ea_err rc = ea_emu_open(c->dir, &o, &c->emu, err, sizeof err);
    if (rc != EA_OK)
        fail_msg("ea_emu_open(%s): %s: %s", c->dir, ea_err_str(rc), err);
    assert_int_equal(ea_emu_chan_open(c->emu, &c->ch), EA_OK);
}

void tu_chip_new(tu_chip *c, int preprovision)
{
    char err[256] = "";
    ea_emu_init_opts io = { 0 };
    io.preprovision = preprovision;
    c->dir = tu_tmpdir("chip");
    ea_err rc = ea_emu_init(c->dir, &io, err, sizeof err);
    if (rc != EA_OK)
        fail_msg("ea_emu_init: %s: %s", ea_err_str(rc), err);
    chip_open(c);
}

void tu_chip_reopen(tu_chip *c)
{
    ea_emu_close(c->emu);
    c->emu = NULL;
    c->ch = NULL;
    chip_open(c);
}

void tu_chip_free(tu_chip *c)
{
    ea_emu_close(c->emu);
    tu_rmrf(c->dir);
    free(c->dir);
    memset(c, 0, sizeof *c);
}

uint16_t tu_xfer(ea_emu_chan *ch, const uint8_t *apdu, size_t len, uint8_t *out, size_t *out_len)
{
    uint8_t r[EA_EMU_APDU_MAX];
    size_t rl = sizeof r;
    assert_int_equal(ea_emu_transceive(ch, apdu, len, r, &rl), EA_OK);
    assert_true(rl >= 2);
    if (out) {
        assert_true(rl - 2 <= *out_len);
        memcpy(out, r, rl - 2);
        *out_len = rl - 2;
    }
    return (uint16_t)((r[rl - 2] << 8) | r[rl - 1]);
}

uint16_t tu_xfer_hex(ea_emu_chan *ch, const char *hex, uint8_t *out, size_t *out_len)
{
    size_t n;
    uint8_t *a = tu_hex(hex, &n);
    uint16_t sw = tu_xfer(ch, a, n, out, out_len);
    free(a);
    return sw;
}

void tu_select(ea_emu_chan *ch)
{
    assert_int_equal(tu_xfer_hex(ch, "00A4040010A0000003965453000000010300000000", NULL, NULL),
                     0x9000);
}

size_t tu_apdu(uint8_t *out, size_t cap, uint8_t cla, uint8_t ins, uint8_t p1, uint8_t p2,
               const uint8_t *body, size_t body_len, int le_ext)
{
    size_t n = 0;
    assert_true(cap >= body_len + 9);
    out[n++] = cla;
    out[n++] = ins;
    out[n++] = p1;
    out[n++] = p2;
    if (body_len > 0 || le_ext) {
        if (body_len < 256 && !le_ext) {
            out[n++] = (uint8_t)body_len;
        } else {
            out[n++] = 0;
            out[n++] = (uint8_t)(body_len >> 8);
            out[n++] = (uint8_t)body_len;
        }
        if (body_len)
            memcpy(out + n, body, body_len);
        n += body_len;
        if (le_ext) {
            out[n++] = 0;
            out[n++] = 0;
        }
    }
    return n;
}

const char *tu_vectors_dir(void)
{
    static char buf[1024];
    const char *e = getenv("EDGEAUTH_VECTORS");
    const char *d = e && *e ? e : EA_DEFAULT_VECTORS_DIR;
    struct stat st;
    if (stat(d, &st) != 0 || !S_ISDIR(st.st_mode))
        return NULL;
    snprintf(buf, sizeof buf, "%s", d);
    return buf;
}

json_object *tu_vectors_json(const char *relpath)
{
    const char *d = tu_vectors_dir();
    char path[1200];
    if (!d) {
        print_message("skipped: vectors folder absent (set EDGEAUTH_VECTORS or provide ../shared/vectors)\n");
        return NULL;
    }
    snprintf(path, sizeof path, "%s/%s", d, relpath);
    json_object *j = json_object_from_file(path);
    if (!j)
        print_message("skipped: cannot read %s\n", path);
    return j;
}

uint8_t *tu_json_hex(json_object *obj, const char *key, size_t *len)
{
    json_object *v;
    if (!json_object_object_get_ex(obj, key, &v))
        fail_msg("vector field %s missing", key);
    const char *s = json_object_get_string(v);
    size_t cap = strlen(s) / 2 + 1;
    uint8_t *b = malloc(cap);
    assert_non_null(b);
    *len = cap;
    assert_int_equal(ea_hex_decode(s, b, len), EA_OK);
    return b;
}

const char *tu_bin(const char *name, char *buf, size_t cap)
{
    snprintf(buf, cap, "%s/%s", EA_BIN_DIR, name);
    return buf;
}
