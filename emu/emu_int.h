/* Internal: the emulated SE05x applet — chip, channels, objects, commands. */
#ifndef EA_EMU_INT_H
#define EA_EMU_INT_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

#include "common/scp03.h"
#include "common/tlv.h"
#include "edgeauth/emu.h"
#include "edgeauth/se05x.h"
#include "emu/store.h"

#define EMU_DEFAULT_VERSION 0x07020000u
#define EMU_FEATURES 0x1492u /* ECDSA_ECDH_ECDHE|HMAC|AES|TLS|FIPS_MODE_DISABLED */
#define EMU_POLICY_MAX 64u         /* bytes of policy records per object */
#define EMU_PERSISTENT_CAPACITY (64u * 1024u)
#define EMU_TRANSIENT_CAPACITY (8u * 1024u)
#define EMU_OBJ_OVERHEAD 32u       /* bytes charged per object for GetFreeMemory */
#define EMU_HMAC_KEY_MAX 256u
#define EMU_BINARY_MAX 0x7FFFu
#define EMU_KDF_OUT_MAX 800u       /* HKDF L / TLS PRF length limit per APDU */
#define EMU_LIST_PAGE 32u          /* ids per ReadIDList response */

/* What an object is, independent of the applet version's type codes. */
typedef enum obj_kind {
    KIND_NONE = 0,
    KIND_EC_PAIR,
    KIND_EC_PRIV,
    KIND_EC_PUB,
    KIND_AES,
    KIND_HMAC,
    KIND_BINARY,
} obj_kind;

typedef struct ea_obj {
    uint32_t id;
    uint8_t kind;   /* obj_kind */
    uint8_t curve;  /* EA_CURVE_* for EC kinds */
    uint8_t origin; /* EA_ORIGIN_* */
    bool transient;
    bool has_value; /* false: transient value lost on reset, or never set */
    bool corrupt;   /* sealed blob failed authentication: never used */
    bool has_policy;
    uint8_t policy[EMU_POLICY_MAX];
    size_t policy_len;
    uint8_t *val; /* EC: priv || pub (pair, priv) or pub; others: the bytes */
    size_t val_len;
    EVP_PKEY *pkey;          /* cache of the EC key, built on first use */
    struct ea_emu_chan *chan; /* owner of a transient object */
} ea_obj;

/* Platform SCP03 state of one channel (spec §7). */
enum { SCP_NONE = 0, SCP_INITIALIZED, SCP_AUTHENTICATED };

struct ea_emu_chan {
    struct ea_emu *emu;
    struct ea_emu_chan *next;
    bool selected;
    bool tls_random_set;
    uint8_t tls_random[32];
    uint8_t scp_state; /* SCP_* */
    ea_scp03_session scp;
    unsigned serial;              /* channel number in the APDU log */
    bool test_card_challenge_set; /* test hook: the next card challenge */
    uint8_t test_card_challenge[EA_SCP03_CHALLENGE_LEN];
};

/* The JCOP security domain's state: the Platform SCP03 static keys and
 * whether the applet insists on a secure channel. Persisted in the store as
 * record EMU_SD_RECORD_ID, which is not an applet object (never listed,
 * read, written or deleted through the applet). */
#define EMU_SD_RECORD_ID 0x7FFF02FFu
typedef struct emu_sd {
    bool has_keys;
    bool corrupt;      /* the record failed authentication: fail closed */
    bool scp_required; /* SetPlatformSCPRequest REQUIRED */
    uint8_t key_version;
    ea_scp03_keys keys;
} emu_sd;

struct ea_emu {
    pthread_mutex_t lock;
    ea_store *store;
    OSSL_LIB_CTX *libctx; /* private: never recurse into an app's provider */
    uint32_t version;
    bool allow_factory_reset;
    ea_obj **objs; /* sorted by id; transient ones carry their channel */
    size_t n_objs, cap_objs;
    ea_emu_chan *chans;
    unsigned next_chan_serial;
    emu_sd sd;
    uint8_t timing;  /* EMU_TIMING_*: delay each command like a real part */
    int apdu_log_fd; /* -1: no APDU log */
    /* Opens of the same chip within one process share this object (see
     * ea_emu_open); the last close frees it. */
    char *realdir;
    unsigned refs;
    struct ea_emu *next_open;
};

/* One command being processed. */
typedef struct apdu_ctx {
    ea_emu *emu;
    ea_emu_chan *ch;
    uint8_t cla, ins, p1, p2;
    const uint8_t *raw;  /* the C-APDU as received */
    size_t raw_nole_len; /* its length without Le (what attestation hashes) */
    ea_cur body;
    bool secure; /* arrived through an authenticated SCP03 channel */
} apdu_ctx;

/* Parsed command TLVs. Tag slots: 0x10..0x1F -> 0..15, 0x41..0x4F -> 16..30,
 * 0x52 -> 31. */
typedef struct tlvs {
    uint32_t present;
    ea_cur v[32];
} tlvs;
#define TM(tag) (1u << tlv_slot(tag))
int tlv_slot(uint8_t tag);
/* Parse the whole body: tags strictly ascending, each allowed by mask,
 * nothing left over. */
ea_err tlvs_parse(ea_cur body, uint32_t allowed, tlvs *t);
bool tlv_has(const tlvs *t, uint8_t tag);
ea_cur tlv_get(const tlvs *t, uint8_t tag);
ea_err tlv_req_u8(const tlvs *t, uint8_t tag, uint8_t *v);
ea_err tlv_req_u16(const tlvs *t, uint8_t tag, uint16_t *v);
ea_err tlv_req_u32(const tlvs *t, uint8_t tag, uint32_t *v);
ea_err tlv_opt_u16(const tlvs *t, uint8_t tag, uint16_t dflt, uint16_t *v);

/* Command handlers: parse, check policy, act, encode. */
typedef ea_err cmd_fn(apdu_ctx *c, ea_wbuf *rsp);
cmd_fn cmd_get_version, cmd_get_random, cmd_get_free_memory, cmd_get_timestamp,
    cmd_check_exists, cmd_delete_object, cmd_delete_all, cmd_read_id_list, cmd_read_type,
    cmd_read_size, cmd_read_curve_list, cmd_get_curve_id, cmd_create_curve, cmd_set_curve_param,
    cmd_delete_curve;
cmd_fn cmd_write_ec_key, cmd_write_symm_key, cmd_write_binary, cmd_read_object;
cmd_fn cmd_ecdsa_sign, cmd_ecdsa_verify, cmd_ecdh, cmd_digest, cmd_hkdf, cmd_tls_random,
    cmd_tls_pms, cmd_tls_prf, cmd_cipher, cmd_mac;

/* Objects (chip.c). Lookups see persistent objects and this channel's
 * transient ones. */
ea_obj *obj_find(apdu_ctx *c, uint32_t id);
/* Find an object that exists, is not corrupt and has a value. */
ea_err obj_get_usable(apdu_ctx *c, uint32_t id, ea_obj **out);
ea_obj *obj_new(uint32_t id);
void obj_free(ea_obj *o);
/* Replace the value of o (wipes the old one). */
ea_err obj_set_value(ea_obj *o, const uint8_t *v, size_t n);
/* Insert a new object (persisting it unless transient); on failure o is
 * freed. */
ea_err obj_insert(apdu_ctx *c, ea_obj *o);
/* Persist o after an in-place change (no-op for transient objects). */
ea_err obj_commit(apdu_ctx *c, ea_obj *o);
ea_err obj_remove(apdu_ctx *c, ea_obj *o);
size_t obj_free_bytes(ea_emu *emu, bool transient, ea_emu_chan *ch);
uint8_t obj_type_code(const ea_emu *emu, const ea_obj *o);
/* Object attributes (spec §4.5), for attested reads. */
ea_err obj_attributes(const ea_emu *emu, const ea_obj *o, ea_wbuf *w);
size_t obj_size(const ea_obj *o);

/* Policies (policy.c) */
ea_err policy_validate(const uint8_t *p, size_t n);
ea_err policy_check(const ea_obj *o, uint32_t need);
uint32_t policy_default(const ea_obj *o);
bool policy_forbids_output(const ea_obj *o);

/* EC helpers (ecc.c), all in the chip's private library context. */
size_t ec_field_len(uint8_t curve); /* 32 / 48, 0 if unsupported */
const char *ec_group_name(uint8_t curve);
ea_err ec_generate(ea_emu *emu, uint8_t curve, uint8_t *priv, uint8_t *pub);
/* priv -> pub; checks 1 <= priv < n. */
ea_err ec_pub_from_priv(ea_emu *emu, uint8_t curve, const uint8_t *priv, uint8_t *pub);
/* Is pub an uncompressed point on the curve (not infinity)? */
ea_err ec_check_pub(ea_emu *emu, uint8_t curve, const uint8_t *pub, size_t len);
ea_err ec_pkey(ea_emu *emu, ea_obj *o, EVP_PKEY **out); /* cached */
ea_err ec_sign_digest(ea_emu *emu, EVP_PKEY *k, const uint8_t *dg, size_t dlen, uint8_t *sig,
                      size_t *sig_len);
/* EA_OK valid, EA_ERR_AUTH invalid (including malformed DER). */
ea_err ec_verify_digest(ea_emu *emu, EVP_PKEY *k, const uint8_t *dg, size_t dlen,
                        const uint8_t *sig, size_t sig_len);
ea_err ec_dh(ea_emu *emu, EVP_PKEY *k, uint8_t curve, const uint8_t *peer, size_t peer_len,
             uint8_t *out, size_t *out_len);
const char *digest_name(uint8_t digest_mode, size_t *len);

/* Security domain (sd.c). */
ea_err sd_load(ea_emu *emu, ea_err status, const ea_store_rec *rec);
/* Give the chip its Platform SCP03 keys (init only). */
ea_err sd_provision(ea_emu *emu, const ea_scp03_keys *k);
/* INITIALIZE UPDATE / EXTERNAL AUTHENTICATE, sent in the clear. */
uint16_t sd_initialize_update(apdu_ctx *c, ea_wbuf *rsp);
uint16_t sd_external_authenticate(apdu_ctx *c);
/* End the channel's secure session (keys wiped). */
void sd_chan_end(ea_emu_chan *ch);
cmd_fn cmd_set_platform_scp;

/* Command names and timing models (timing.c). */
enum { EMU_TIMING_NONE = 0, EMU_TIMING_SE050 };
ea_err emu_timing_parse(const char *model, uint8_t *out);
/* What the command would take on the modelled part (us); body_len is the
 * plain command's data length, wire_bytes C-APDU + R-APDU as they travel. */
uint32_t emu_timing_us(uint8_t model, uint8_t cla, uint8_t ins, uint8_t p1, uint8_t p2, size_t body_len,
                       size_t wire_bytes, bool secure);
uint64_t emu_now_ns(void);
void emu_sleep_until(uint64_t deadline_ns);
/* One line per command into the APDU log: header, name, lengths, SW, time. */
void emu_apdu_log(ea_emu *emu, const ea_emu_chan *ch, const apdu_ctx *c, bool secure, uint16_t sw,
                  size_t clen, size_t rlen, uint64_t took_ns);

/* Factory state (factory.c). */
ea_err factory_populate(ea_emu *emu, const ea_emu_init_opts *o, const ea_scp03_keys *scp,
                        const char *dir, char *err, size_t errlen);

#endif
