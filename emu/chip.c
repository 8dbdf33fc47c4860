/* The chip: open/close, channels, the object table and its persistence. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/rand.h>

#include "common/util.h"
#include "emu/emu_int.h"

void emu_chan_deselect(ea_emu_chan *ch);

/* ---- object metadata as sealed in the store (authenticated, not secret) --
 * ver(1)=1 kind(1) curve(1) origin(1) flags(1) policy_len(1) policy(...)  */
#define META_VER 1u
#define META_FLAG_POLICY 0x01u

static size_t meta_encode(const ea_obj *o, uint8_t *m)
{
    m[0] = META_VER;
    m[1] = o->kind;
    m[2] = o->curve;
    m[3] = o->origin;
    m[4] = o->has_policy ? META_FLAG_POLICY : 0;
    m[5] = (uint8_t)o->policy_len;
    memcpy(m + 6, o->policy, o->policy_len);
    return 6 + o->policy_len;
}

static ea_err meta_decode(ea_obj *o, const uint8_t *m, size_t n)
{
    if (n < 6 || m[0] != META_VER || m[5] > EMU_POLICY_MAX || n != 6u + m[5])
        return EA_ERR_CORRUPT;
    if (m[1] < KIND_EC_PAIR || m[1] > KIND_BINARY)
        return EA_ERR_CORRUPT;
    o->kind = m[1];
    o->curve = m[2];
    o->origin = m[3];
    o->has_policy = (m[4] & META_FLAG_POLICY) != 0;
    o->policy_len = m[5];
    memcpy(o->policy, m + 6, m[5]);
    return EA_OK;
}

/* ---- the object table ---------------------------------------------------- */

ea_obj *obj_new(uint32_t id)
{
    ea_obj *o = calloc(1, sizeof *o);
    if (o)
        o->id = id;
    return o;
}

void obj_free(ea_obj *o)
{
    if (!o)
        return;
    if (o->val) {
        ea_cleanse(o->val, o->val_len);
        free(o->val);
    }
    EVP_PKEY_free(o->pkey);
    ea_cleanse(o, sizeof *o);
    free(o);
}

ea_err obj_set_value(ea_obj *o, const uint8_t *v, size_t n)
{
    uint8_t *nv = NULL;
    if (n) {
        nv = malloc(n);
        if (!nv)
            return EA_ERR_NO_MEMORY;
        memcpy(nv, v, n);
    }
    if (o->val) {
        ea_cleanse(o->val, o->val_len);
        free(o->val);
    }
    o->val = nv;
    o->val_len = n;
    o->has_value = true;
    EVP_PKEY_free(o->pkey);
    o->pkey = NULL;
    return EA_OK;
}

static bool visible(const ea_obj *o, const ea_emu_chan *ch)
{
    return !o->transient || o->chan == ch;
}

static ea_obj *find_in(ea_emu *emu, const ea_emu_chan *ch, uint32_t id)
{
    /* Few objects (tens): a linear scan over the sorted table is enough. */
    for (size_t i = 0; i < emu->n_objs; i++) {
        ea_obj *o = emu->objs[i];
        if (o->id == id && visible(o, ch))
            return o;
        if (o->id > id)
            break;
    }
    return NULL;
}

ea_obj *obj_find(apdu_ctx *c, uint32_t id)
{
    return find_in(c->emu, c->ch, id);
}

ea_err obj_get_usable(apdu_ctx *c, uint32_t id, ea_obj **out)
{
    ea_obj *o = obj_find(c, id);
    if (!o)
        return EA_ERR_NOT_FOUND;
    if (o->corrupt || !o->has_value)
        return EA_ERR_CONDITIONS;
    *out = o;
    return EA_OK;
}

size_t obj_size(const ea_obj *o)
{
    switch (o->kind) {
    case KIND_EC_PAIR:
    case KIND_EC_PRIV:
    case KIND_EC_PUB:
        return ec_field_len(o->curve);
    default:
        return o->val_len;
    }
}

static size_t obj_charge(const ea_obj *o)
{
    return EMU_OBJ_OVERHEAD + o->val_len + o->policy_len;
}

size_t obj_free_bytes(ea_emu *emu, bool transient, ea_emu_chan *ch)
{
    size_t used = 0, cap = transient ? EMU_TRANSIENT_CAPACITY : EMU_PERSISTENT_CAPACITY;
    for (size_t i = 0; i < emu->n_objs; i++) {
        ea_obj *o = emu->objs[i];
        if (o->transient == transient && (!transient || o->chan == ch))
            used += obj_charge(o);
    }
    return used >= cap ? 0 : cap - used;
}

static ea_err persist(ea_emu *emu, const ea_obj *o)
{
    uint8_t meta[6 + EMU_POLICY_MAX];
    ea_store_rec rec = { 0 };
    rec.id = o->id;
    rec.meta = meta;
    rec.meta_len = meta_encode(o, meta);
    rec.value = o->val;
    rec.value_len = o->val_len;
    return ea_store_put(emu->store, &rec);
}

static ea_err table_add(ea_emu *emu, ea_obj *o)
{
    if (emu->n_objs == emu->cap_objs) {
        size_t ncap = emu->cap_objs ? emu->cap_objs * 2 : 32;
        ea_obj **n = realloc(emu->objs, ncap * sizeof *n);
        if (!n)
            return EA_ERR_NO_MEMORY;
        emu->objs = n;
        emu->cap_objs = ncap;
    }
    size_t at = emu->n_objs;
    while (at > 0 && emu->objs[at - 1]->id > o->id) {
        emu->objs[at] = emu->objs[at - 1];
        at--;
    }
    emu->objs[at] = o;
    emu->n_objs++;
    return EA_OK;
}

static void table_del(ea_emu *emu, ea_obj *o)
{
    for (size_t i = 0; i < emu->n_objs; i++) {
        if (emu->objs[i] == o) {
            memmove(&emu->objs[i], &emu->objs[i + 1], (emu->n_objs - i - 1) * sizeof o);
            emu->n_objs--;
            return;
        }
    }
}

ea_err obj_insert(apdu_ctx *c, ea_obj *o)
{
    ea_err rc;
    if (o->transient) {
        o->chan = c->ch;
        if (obj_charge(o) > obj_free_bytes(c->emu, true, c->ch)) {
            rc = EA_ERR_FULL;
            goto fail;
        }
    } else if (obj_charge(o) > obj_free_bytes(c->emu, false, NULL)) {
        rc = EA_ERR_FULL;
        goto fail;
    }
    if ((rc = table_add(c->emu, o)) != EA_OK)
        goto fail;
    if (!o->transient && (rc = persist(c->emu, o)) != EA_OK) {
        table_del(c->emu, o);
        goto fail;
    }
    return EA_OK;
fail:
    obj_free(o);
    return rc;
}

ea_err obj_commit(apdu_ctx *c, ea_obj *o)
{
    return o->transient ? EA_OK : persist(c->emu, o);
}

ea_err obj_remove(apdu_ctx *c, ea_obj *o)
{
    if (!o->transient) {
        ea_err rc = ea_store_del(c->emu->store, o->id);
        if (rc != EA_OK && rc != EA_ERR_NOT_FOUND)
            return rc;
    }
    table_del(c->emu, o);
    obj_free(o);
    return EA_OK;
}

/* ---- open / close ---------------------------------------------------------- */

static ea_err load_one(void *ctx, ea_err status, const ea_store_rec *rec)
{
    ea_emu *emu = ctx;
    if (rec->id == EMU_SD_RECORD_ID)
        return sd_load(emu, status, rec);
    ea_obj *o = obj_new(rec->id);
    if (!o)
        return EA_ERR_NO_MEMORY;
    if (status != EA_OK || meta_decode(o, rec->meta, rec->meta_len) != EA_OK) {
        /* Keep the id so the object is visibly there but refuses every use. */
        o->corrupt = true;
        o->kind = KIND_NONE;
    } else if (obj_set_value(o, rec->value, rec->value_len) != EA_OK) {
        obj_free(o);
        return EA_ERR_NO_MEMORY;
    }
    ea_err rc = table_add(emu, o);
    if (rc != EA_OK)
        obj_free(o);
    return rc;
}

/* The chips this process has open. One process may open the same chip
 * several times (the host library's emu: transport and the provider's own
 * session, say): they share one ea_emu, each with its own channels, instead
 * of fighting over the directory lock. The only mutable file-scope state of
 * emu/, guarded by its own mutex. */
static pthread_mutex_t open_lock = PTHREAD_MUTEX_INITIALIZER;
static ea_emu *open_chips;

static void free_chip(ea_emu *emu)
{
    while (emu->chans)
        ea_emu_chan_close(emu->chans);
    for (size_t i = 0; i < emu->n_objs; i++)
        obj_free(emu->objs[i]);
    free(emu->objs);
    ea_cleanse(&emu->sd, sizeof emu->sd);
    if (emu->apdu_log_fd >= 0)
        close(emu->apdu_log_fd);
    ea_store_close(emu->store);
    OSSL_LIB_CTX_free(emu->libctx);
    pthread_mutex_destroy(&emu->lock);
    free(emu->realdir);
    free(emu);
}

static ea_err open_chip(const char *dir, const char *realdir, const ea_emu_opts *opts, ea_emu **out,
                        char *errbuf, size_t errlen)
{
    ea_err rc = EA_ERR_INTERNAL;
    ea_emu *emu;
    ea_store_opts so = { 0 };

    emu = calloc(1, sizeof *emu);
    if (!emu)
        return EA_ERR_NO_MEMORY;
    pthread_mutex_init(&emu->lock, NULL);
    emu->version = opts && opts->applet_version ? opts->applet_version : EMU_DEFAULT_VERSION;
    emu->allow_factory_reset = opts && opts->allow_factory_reset;
    emu->apdu_log_fd = -1;
    const char *timing = opts && opts->timing ? opts->timing : getenv("EDGEAUTH_SE_TIMING");
    if (emu_timing_parse(timing, &emu->timing) != EA_OK) {
        if (errbuf && errlen)
            snprintf(errbuf, errlen, "unknown timing model \"%s\" (se050 or none)", timing);
        rc = EA_ERR_ARG;
        goto fail;
    }
    const char *log = opts && opts->apdu_log ? opts->apdu_log : getenv("EDGEAUTH_SE_APDU_LOG");
    if (log && *log &&
        (emu->apdu_log_fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600)) < 0) {
        if (errbuf && errlen)
            snprintf(errbuf, errlen, "cannot open the APDU log %s: %s", log, strerror(errno));
        rc = EA_ERR_IO;
        goto fail;
    }
    emu->refs = 1;
    emu->realdir = strdup(realdir);
    emu->libctx = OSSL_LIB_CTX_new();
    if (!emu->libctx || !emu->realdir) {
        rc = EA_ERR_CRYPTO;
        goto fail;
    }
    so.key_path = opts ? opts->seal_key_path : NULL;
    so.holder = opts && opts->holder ? opts->holder : "edgeauth";
    if ((rc = ea_store_open(dir, &so, &emu->store, errbuf, errlen)) != EA_OK)
        goto fail;
    if ((rc = ea_store_foreach(emu->store, load_one, emu)) != EA_OK) {
        if (errbuf && errlen)
            snprintf(errbuf, errlen, "cannot load the objects of %s", dir);
        goto fail;
    }
    *out = emu;
    return EA_OK;
fail:
    free_chip(emu);
    return rc;
}

ea_err ea_emu_open(const char *dir, const ea_emu_opts *opts, ea_emu **out, char *errbuf,
                   size_t errlen)
{
    char real[PATH_MAX];
    ea_err rc = EA_OK;

    if (!dir || !out)
        return EA_ERR_ARG;
    if (errbuf && errlen)
        errbuf[0] = '\0';
    if (!realpath(dir, real)) {
        if (errbuf && errlen)
            snprintf(errbuf, errlen, "cannot open chip %s: %s", dir, strerror(errno));
        return errno == ENOENT ? EA_ERR_NOT_FOUND : EA_ERR_IO;
    }
    pthread_mutex_lock(&open_lock);
    ea_emu *e;
    for (e = open_chips; e; e = e->next_open)
        if (strcmp(e->realdir, real) == 0)
            break;
    if (e) {
        e->refs++;
        *out = e;
    } else if ((rc = open_chip(dir, real, opts, out, errbuf, errlen)) == EA_OK) {
        (*out)->next_open = open_chips;
        open_chips = *out;
    }
    pthread_mutex_unlock(&open_lock);
    return rc;
}

void ea_emu_close(ea_emu *emu)
{
    if (!emu)
        return;
    pthread_mutex_lock(&open_lock);
    bool last = --emu->refs == 0;
    if (last) {
        for (ea_emu **pp = &open_chips; *pp; pp = &(*pp)->next_open)
            if (*pp == emu) {
                *pp = emu->next_open;
                break;
            }
    }
    pthread_mutex_unlock(&open_lock);
    if (last)
        free_chip(emu);
}

ea_err ea_emu_chan_open(ea_emu *emu, ea_emu_chan **out)
{
    if (!emu || !out)
        return EA_ERR_ARG;
    ea_emu_chan *ch = calloc(1, sizeof *ch);
    if (!ch)
        return EA_ERR_NO_MEMORY;
    ch->emu = emu;
    pthread_mutex_lock(&emu->lock);
    ch->serial = ++emu->next_chan_serial;
    ch->next = emu->chans;
    emu->chans = ch;
    pthread_mutex_unlock(&emu->lock);
    *out = ch;
    return EA_OK;
}

void ea_emu_chan_close(ea_emu_chan *ch)
{
    if (!ch)
        return;
    ea_emu *emu = ch->emu;
    pthread_mutex_lock(&emu->lock);
    for (size_t i = emu->n_objs; i-- > 0;) {
        ea_obj *o = emu->objs[i];
        if (o->transient && o->chan == ch) {
            table_del(emu, o);
            obj_free(o);
        }
    }
    for (ea_emu_chan **pp = &emu->chans; *pp; pp = &(*pp)->next) {
        if (*pp == ch) {
            *pp = ch->next;
            break;
        }
    }
    pthread_mutex_unlock(&emu->lock);
    ea_scp03_wipe(&ch->scp); /* keys and keyed contexts */
    ea_cleanse(ch, sizeof *ch);
    free(ch);
}

void ea_emu_chan_reset(ea_emu_chan *ch)
{
    if (!ch)
        return;
    pthread_mutex_lock(&ch->emu->lock);
    emu_chan_deselect(ch);
    sd_chan_end(ch); /* a reset ends the secure session too (spec §7.7) */
    pthread_mutex_unlock(&ch->emu->lock);
}

ea_err ea_emu_test_set_tls_random(ea_emu_chan *ch, const uint8_t random[32])
{
    if (!ch || !random)
        return EA_ERR_ARG;
    pthread_mutex_lock(&ch->emu->lock);
    memcpy(ch->tls_random, random, 32);
    ch->tls_random_set = true;
    pthread_mutex_unlock(&ch->emu->lock);
    return EA_OK;
}

ea_err ea_emu_test_set_card_challenge(ea_emu_chan *ch, const uint8_t challenge[8])
{
    if (!ch || !challenge)
        return EA_ERR_ARG;
    pthread_mutex_lock(&ch->emu->lock);
    memcpy(ch->test_card_challenge, challenge, sizeof ch->test_card_challenge);
    ch->test_card_challenge_set = true;
    pthread_mutex_unlock(&ch->emu->lock);
    return EA_OK;
}

/* UM11225 ATR of a JCOP4 SE05x (spec §6.1). */
static const uint8_t atr[] = {
    0x00, 0xA0, 0x00, 0x00, 0x03, 0x96, 0x04, 0x03, 0xE8, 0x00, 0xFE, 0x02,
    0x0B, 0x03, 0xE8, 0x08, 0x01, 0x00, 0x00, 0x00, 0x00, 0x64, 0x00, 0x00,
    0x0A, 0x4A, 0x43, 0x4F, 0x50, 0x34, 0x20, 0x41, 0x54, 0x50, 0x4F,
};

ea_err ea_emu_atr(uint8_t *out, size_t *out_len)
{
    if (!out || !out_len)
        return EA_ERR_ARG;
    if (*out_len < sizeof atr) {
        *out_len = sizeof atr;
        return EA_ERR_BUF_TOO_SMALL;
    }
    memcpy(out, atr, sizeof atr);
    *out_len = sizeof atr;
    return EA_OK;
}

/* ---- type codes and attributes --------------------------------------------- */

uint8_t obj_type_code(const ea_emu *emu, const ea_obj *o)
{
    bool v7 = emu->version >= 0x07000000u;
    int part = o->kind == KIND_EC_PAIR ? 0 : o->kind == KIND_EC_PRIV ? 1 : 2;
    switch (o->kind) {
    case KIND_EC_PAIR:
    case KIND_EC_PRIV:
    case KIND_EC_PUB:
        if (!v7)
            return (uint8_t)(EA_TYPE3_EC_PAIR + part);
        return (uint8_t)((o->curve == EA_CURVE_NIST_P384 ? EA_TYPE_EC_P384_PAIR
                                                          : EA_TYPE_EC_P256_PAIR) +
                         part);
    case KIND_AES:
        return EA_TYPE_AES;
    case KIND_HMAC:
        return EA_TYPE_HMAC;
    case KIND_BINARY:
        return EA_TYPE_BINARY;
    default:
        return 0;
    }
}

ea_err obj_attributes(const ea_emu *emu, const ea_obj *o, ea_wbuf *w)
{
    ea_wbuf_u32(w, o->id);
    ea_wbuf_u8(w, obj_type_code(emu, o));
    ea_wbuf_u8(w, EA_SET_NOT); /* not an authentication object */
    ea_wbuf_u16(w, 0);         /* attempts / min AEAD tag length */
    ea_wbuf_u32(w, 0);         /* owner */
    ea_wbuf_u16(w, 0);         /* max attempts / RFU */
    if (o->has_policy) {
        ea_wbuf_put(w, o->policy, o->policy_len);
    } else {
        ea_wbuf_u8(w, 8);
        ea_wbuf_u32(w, 0);
        ea_wbuf_u32(w, policy_default(o));
    }
    ea_wbuf_u8(w, o->origin);
    if (emu->version >= 0x07000000u)
        ea_wbuf_u32(w, 0); /* object version */
    return w->overflow ? EA_ERR_BUF_TOO_SMALL : EA_OK;
}
