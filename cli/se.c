/* `edgeauth se ...`: drive a secure element (emulated or real) by hand.
 *
 *   edgeauth [--se URI] se info | list | keygen | pubkey | delete | random |
 *                          write | read | sign | verify | attest  [--json]
 *
 * Every subcommand opens one host session (ea_host_open), does its work
 * through the public host API and closes it. Output is human-readable on
 * stdout, or one compact JSON object with --json. Errors go to stderr as
 * "edgeauth se CMD: <what failed, naming the object>" and the exit status
 * is 1 (2 for a usage error). Nothing read from an input file is ever
 * echoed, and secret values never leave the chip anyway. */
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/bio.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>

#include "cli/cli.h"
#include "common/tlv.h"
#include "common/util.h"
#include "edgeauth/host.h"

#define EXIT_FAIL 1
#define EXIT_USAGE 2

#define RANDOM_MAX 65536u     /* bytes per `se random` */
#define BINARY_MAX 0x7FFFu    /* largest binary file the chip holds */
#define DIGEST_MAX 64u        /* SHA-512 */
#define SIG_FILE_MAX 1024u    /* a DER signature, or its hex */
#define LIST_MAX 65536u       /* ids in one chip, far above any real one */
#define POLICY_TEXT 256u

/* ---- what the chip's codes mean ---------------------------------------------- */

enum obj_kind { K_EC_PAIR, K_EC_PRIV, K_EC_PUB, K_RSA, K_SECRET, K_BINARY, K_OTHER };

typedef struct type_info {
    uint8_t code;
    enum obj_kind kind;
    char name[48];     /* "EC P-256 key pair" */
    const char *curve; /* "P-256"; NULL when not EC or not known (applet 3.x) */
    const char *group; /* OpenSSL group name for a SubjectPublicKeyInfo; NULL = none */
} type_info;

/* Applet 7.2 codes one curve per block of (pair, private, public); spec §1.5. */
static const struct curve_code {
    uint8_t base;
    const char *name;
    const char *group;
} curve_codes[] = {
    { 0x21, "P-192", "P-192" },
    { 0x25, "P-224", "P-224" },
    { EA_TYPE_EC_P256_PAIR, "P-256", "P-256" },
    { EA_TYPE_EC_P384_PAIR, "P-384", "P-384" },
    { 0x31, "P-521", "P-521" },
    { 0x35, "brainpoolP160r1", "brainpoolP160r1" },
    { 0x39, "brainpoolP192r1", "brainpoolP192r1" },
    { 0x3D, "brainpoolP224r1", "brainpoolP224r1" },
    { 0x41, "brainpoolP256r1", "brainpoolP256r1" },
    { 0x45, "brainpoolP320r1", "brainpoolP320r1" },
    { 0x49, "brainpoolP384r1", "brainpoolP384r1" },
    { 0x4D, "brainpoolP512r1", "brainpoolP512r1" },
    { 0x51, "secp160k1", "secp160k1" },
    { 0x55, "secp192k1", "secp192k1" },
    { 0x59, "secp224k1", "secp224k1" },
    { 0x5D, "secp256k1", "secp256k1" },
    { 0x61, "BN-P256", NULL },
    { 0x65, "Ed25519", NULL },
    { 0x69, "X25519", NULL },
    { 0x71, "X448", NULL },
};

static const struct plain_code {
    uint8_t code;
    enum obj_kind kind;
    const char *name;
} plain_codes[] = {
    { EA_TYPE3_EC_PAIR, K_EC_PAIR, "EC key pair" },
    { EA_TYPE3_EC_PRIV, K_EC_PRIV, "EC private key" },
    { EA_TYPE3_EC_PUB, K_EC_PUB, "EC public key" },
    { 0x04, K_RSA, "RSA key pair" },
    { 0x05, K_RSA, "RSA key pair (CRT)" },
    { 0x06, K_RSA, "RSA private key" },
    { 0x07, K_RSA, "RSA private key (CRT)" },
    { 0x08, K_RSA, "RSA public key" },
    { EA_TYPE_AES, K_SECRET, "AES key" },
    { EA_TYPE_DES, K_SECRET, "DES key" },
    { EA_TYPE_BINARY, K_BINARY, "binary file" },
    { EA_TYPE_USERID, K_SECRET, "user id" },
    { EA_TYPE_COUNTER, K_OTHER, "counter" },
    { EA_TYPE_PCR, K_OTHER, "PCR" },
    { EA_TYPE_CURVE, K_OTHER, "EC curve" },
    { EA_TYPE_HMAC, K_SECRET, "HMAC key" },
};

static type_info type_of(uint8_t code)
{
    static const char *const part[] = { "key pair", "private key", "public key" };
    type_info t = { .code = code, .kind = K_OTHER };

    for (size_t i = 0; i < sizeof plain_codes / sizeof plain_codes[0]; i++) {
        if (plain_codes[i].code == code) {
            t.kind = plain_codes[i].kind;
            snprintf(t.name, sizeof t.name, "%s", plain_codes[i].name);
            return t;
        }
    }
    for (size_t i = 0; i < sizeof curve_codes / sizeof curve_codes[0]; i++) {
        unsigned off = (unsigned)code - curve_codes[i].base;
        if (code >= curve_codes[i].base && off < 3) {
            t.kind = off == 0 ? K_EC_PAIR : off == 1 ? K_EC_PRIV : K_EC_PUB;
            t.curve = curve_codes[i].name;
            t.group = curve_codes[i].group;
            snprintf(t.name, sizeof t.name, "EC %s %s", t.curve, part[off]);
            return t;
        }
    }
    snprintf(t.name, sizeof t.name, "type 0x%02X", code);
    return t;
}

/* "an HMAC key", "a binary file". */
static const char *article(const char *name)
{
    if (!strncmp(name, "HMAC", 4) || !strncmp(name, "RSA", 3) || strchr("AEIOaeio", name[0]))
        return "an";
    return "a";
}

static bool is_ec(const type_info *t)
{
    return t->kind == K_EC_PAIR || t->kind == K_EC_PRIV || t->kind == K_EC_PUB;
}

static const char *origin_word(uint8_t o)
{
    switch (o) {
    case EA_ORIGIN_EXTERNAL: return "external";
    case EA_ORIGIN_INTERNAL: return "internal";
    case EA_ORIGIN_PROVISIONED: return "provisioned";
    default: return "unknown";
    }
}

static const char *origin_words(uint8_t o)
{
    switch (o) {
    case EA_ORIGIN_EXTERNAL: return "imported from outside the chip";
    case EA_ORIGIN_INTERNAL: return "generated inside the chip";
    case EA_ORIGIN_PROVISIONED: return "provisioned by the SE vendor";
    default: return "unknown origin";
    }
}

/* Policy words, in the order they are printed. settable = accepted by
 * --policy (require-pcr needs a PCR id and value the CLI does not take). */
static const struct pol_word {
    const char *word;
    uint32_t bit;
    bool settable;
} pol_words[] = {
    { "forbid-all", EA_POL_FORBID_ALL, true },
    { "sign", EA_POL_ALLOW_SIGN, true },
    { "verify", EA_POL_ALLOW_VERIFY, true },
    { "ka", EA_POL_ALLOW_KA, true },
    { "enc", EA_POL_ALLOW_ENC, true },
    { "dec", EA_POL_ALLOW_DEC, true },
    { "hkdf", EA_POL_ALLOW_HKDF, true },
    { "wrap", EA_POL_ALLOW_WRAP, true },
    { "read", EA_POL_ALLOW_READ, true },
    { "write", EA_POL_ALLOW_WRITE, true },
    { "gen", EA_POL_ALLOW_GEN, true },
    { "delete", EA_POL_ALLOW_DELETE, true },
    { "attest", EA_POL_ALLOW_ATTESTATION, true },
    { "tls-pms", EA_POL_ALLOW_TLS_PMS, true },
    { "tls-kdf", EA_POL_ALLOW_TLS_KDF, true },
    { "import-export", EA_POL_ALLOW_IMPORT_EXPORT, true },
    { "kdf-ext-random", EA_POL_ALLOW_KDF_EXT_RANDOM, true },
    { "forbid-derived-output", EA_POL_FORBID_DERIVED_OUTPUT, true },
    { "require-sm", EA_POL_REQUIRE_SM, true },
    { "require-pcr", EA_POL_REQUIRE_PCR, false },
};

/* Append text to a bounded string; truncation is visible as "...". */
__attribute__((format(printf, 3, 4))) static void cat(char *buf, size_t cap, const char *fmt, ...)
{
    size_t len = strlen(buf);
    va_list ap;
    int n;

    if (len + 1 >= cap)
        return;
    va_start(ap, fmt);
    n = vsnprintf(buf + len, cap - len, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= cap - len)
        memcpy(buf + cap - 4, "...", 4);
}

static void ar_words(uint32_t ar, char *buf, size_t cap)
{
    uint32_t rest = ar;
    bool first = true;

    buf[0] = '\0';
    for (size_t i = 0; i < sizeof pol_words / sizeof pol_words[0]; i++) {
        if (!(ar & pol_words[i].bit))
            continue;
        cat(buf, cap, "%s%s", first ? "" : ",", pol_words[i].word);
        rest &= ~pol_words[i].bit;
        first = false;
    }
    if (rest)
        cat(buf, cap, "%s0x%08X", first ? "" : ",", rest);
    else if (first)
        cat(buf, cap, "none");
}

/* Policy records (spec §4.2) in words: "sign,read" for the rule that applies
 * to everyone, "0x7FFF0200: ..." for a rule of an authentication object. */
static bool policy_text(const uint8_t *p, size_t n, char *buf, size_t cap)
{
    ea_cur c = ea_cur_make(p, n), rec;
    bool first = true;

    buf[0] = '\0';
    if (n == 0)
        cat(buf, cap, "none recorded");
    while (c.n > 0) {
        char words[POLICY_TEXT];
        uint32_t auth, ar;
        uint8_t len;
        /* a record is LEN, then LEN bytes: auth id, AR header, extension */
        if (!ea_cur_u8(&c, &len) || len < 8 || !ea_cur_take(&c, len, &rec) || !ea_cur_u32(&rec, &auth) ||
            !ea_cur_u32(&rec, &ar))
            return false;
        ar_words(ar, words, sizeof words);
        cat(buf, cap, "%s", first ? "" : "; ");
        if (auth)
            cat(buf, cap, "0x%08X: %s", auth, words);
        else
            cat(buf, cap, "%s", words);
        first = false;
    }
    return true;
}

/* ObjectAttributes of an attested read (spec §4.5, applet 7.2): id(4)
 * type(1) auth(1) attempts(2) owner(4) maxattempts(2) policy... origin(1)
 * version(4). */
typedef struct attrs {
    uint32_t id;
    uint8_t type, origin;
    char policy[POLICY_TEXT];
} attrs;

#define ATTR_HEAD 14u
#define ATTR_TAIL 5u

static bool parse_attrs(const uint8_t *p, size_t n, attrs *out)
{
    if (n < ATTR_HEAD + ATTR_TAIL)
        return false;
    out->id = ea_get_be32(p);
    out->type = p[4];
    out->origin = p[n - ATTR_TAIL];
    return policy_text(p + ATTR_HEAD, n - ATTR_HEAD - ATTR_TAIL, out->policy, sizeof out->policy);
}

/* ---- signature algorithms ---------------------------------------------------- */

static const struct alg_def {
    const char *name;
    uint8_t algo;
    size_t dlen;
} algs[] = {
    { "sha1", EA_SIG_ECDSA_SHA1, 20 },     { "sha224", EA_SIG_ECDSA_SHA224, 28 },
    { "sha256", EA_SIG_ECDSA_SHA256, 32 }, { "sha384", EA_SIG_ECDSA_SHA384, 48 },
    { "sha512", EA_SIG_ECDSA_SHA512, 64 },
};

/* ---- options ----------------------------------------------------------------- */

enum {
    OPT_ID = 1u << 0,
    OPT_CURVE = 1u << 1,
    OPT_POLICY = 1u << 2,
    OPT_TRANSIENT = 1u << 3,
    OPT_PEM = 1u << 4,
    OPT_OUT = 1u << 5,
    OPT_IN = 1u << 6,
    OPT_ALG = 1u << 7,
    OPT_SIG = 1u << 8,
    OPT_VENDOR_CA = 1u << 9,
    OPT_ATTEST_KEY = 1u << 10,
    OPT_ATTEST_CERT = 1u << 11,
    OPT_FORCE = 1u << 12,
};
#define OPT_CODE0 256 /* getopt value of the option with bit 0 */

static const struct opt_def {
    const char *name;
    int has_arg;
    const char *arg;
    const char *help;
} opt_defs[] = { /* index i has bit 1u << i */
    { "id", required_argument, "ID", "object id, 0x-hex or decimal (e.g. 0xF0000100)" },
    { "curve", required_argument, "CURVE", "P-256 or P-384" },
    { "policy", required_argument, "WORDS",
      "comma-separated: sign,verify,ka,enc,dec,hkdf,wrap,read,write,gen,delete,\n"
      "attest,tls-pms,tls-kdf,import-export,kdf-ext-random,forbid-derived-output,\n"
      "require-sm,forbid-all, or none (default: the chip's default policy)" },
    { "transient", no_argument, NULL, "a transient object (gone when this session ends)" },
    { "pem", no_argument, NULL, "SubjectPublicKeyInfo PEM instead of the raw point" },
    { "out", required_argument, "FILE", "write the result (raw bytes, or PEM) to FILE" },
    { "in", required_argument, "FILE", "input file (raw bytes; for sign/verify the digest)" },
    { "alg", required_argument, "ALG",
      "sha1, sha224, sha256, sha384 or sha512 (default: sha256, sha384 or\n"
      "sha512 by the digest's length of 32, 48 or 64 bytes)" },
    { "sig", required_argument, "FILE", "DER signature (or its hex)" },
    { "vendor-ca", required_argument, "FILE", "PEM certificate(s) of the SE vendor CA to trust" },
    { "attest-key", required_argument, "ID", "attestation key (default 0xF0000012)" },
    { "attest-cert", required_argument, "ID", "its certificate, DER (default 0xF0000013)" },
    { "force", no_argument, NULL, "regenerate an existing key pair in place (needs gen)" },
};

typedef struct se_args {
    unsigned seen; /* OPT_* given */
    uint32_t id, attest_key, attest_cert;
    uint8_t curve;
    const char *curve_name;
    uint32_t policy_ar;
    const struct alg_def *alg; /* NULL = from the digest length */
    const char *out, *in, *sig, *vendor_ca;
    size_t count; /* `random N` */
    int scp_mode; /* `scp03 require|release`: 1 / 2 */
} se_args;

typedef struct se_ctx se_ctx;
typedef int se_fn(se_ctx *c);
static se_fn se_info, se_list, se_keygen, se_pubkey, se_delete, se_random, se_write, se_read, se_sign,
    se_verify, se_attest, se_scp03;

static const struct se_cmd {
    const char *name;
    se_fn *fn;
    unsigned opts, need;
    bool count; /* takes the positional N (random) or the mode word (scp03) */
    const char *usage;
    const char *desc;
} se_cmds[] = {
    { "info", se_info, 0, 0, false, "info", "applet version, unique id, free memory, transport" },
    { "list", se_list, 0, 0, false, "list", "the objects: id, type, size, storage, origin, policy" },
    { "keygen", se_keygen, OPT_ID | OPT_CURVE | OPT_POLICY | OPT_TRANSIENT | OPT_FORCE, OPT_ID | OPT_CURVE,
      false, "keygen --id ID --curve P-256|P-384 [--policy WORDS] [--transient] [--force]",
      "generate an EC key pair inside the chip" },
    { "pubkey", se_pubkey, OPT_ID | OPT_PEM | OPT_OUT, OPT_ID, false, "pubkey --id ID [--pem] [--out FILE]",
      "the public key of an EC key: raw point in hex, or PEM" },
    { "delete", se_delete, OPT_ID, OPT_ID, false, "delete --id ID", "delete an object" },
    { "random", se_random, OPT_OUT, 0, true, "random N [--out FILE]",
      "N random bytes from the chip (hex, or raw bytes to FILE)" },
    { "write", se_write, OPT_ID | OPT_IN | OPT_POLICY, OPT_ID | OPT_IN, false,
      "write --id ID --in FILE [--policy WORDS]", "create a binary file, or overwrite one of the same size" },
    { "read", se_read, OPT_ID | OPT_OUT, OPT_ID, false, "read --id ID [--out FILE]",
      "read a binary file or a public key (hex, or raw bytes to FILE)" },
    { "sign", se_sign, OPT_ID | OPT_IN | OPT_ALG | OPT_OUT, OPT_ID | OPT_IN, false,
      "sign --id ID --in DIGEST_FILE [--alg ALG] [--out FILE]",
      "ECDSA-sign a digest (raw bytes) inside the chip; DER signature out" },
    { "verify", se_verify, OPT_ID | OPT_IN | OPT_SIG | OPT_ALG, OPT_ID | OPT_IN | OPT_SIG, false,
      "verify --id ID --in DIGEST_FILE --sig SIG_FILE [--alg ALG]",
      "verify an ECDSA signature inside the chip (exit 0 valid, 1 not valid)" },
    { "attest", se_attest, OPT_ID | OPT_VENDOR_CA | OPT_ATTEST_KEY | OPT_ATTEST_CERT, OPT_ID | OPT_VENDOR_CA,
      false, "attest --id ID --vendor-ca FILE [--attest-key ID] [--attest-cert ID]",
      "read an object with attestation and prove where it comes from" },
    { "scp03", se_scp03, 0, 0, true, "scp03 require|release",
      "make the chip refuse every command outside Platform SCP03, or lift that (needs ?scp03=)" },
};

struct se_ctx {
    const struct se_cmd *cmd;
    const char *uri; /* NULL = EDGEAUTH_SE or the library default */
    bool json;
    ea_host *h;
    se_args a;
};

/* ---- JSON output ------------------------------------------------------------- */

typedef struct jw {
    FILE *f;
    int depth;
    bool first[8];
} jw;

static void j_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            fprintf(f, "\\%c", *p);
        else if (*p == '\n')
            fputs("\\n", f);
        else if (*p < 0x20)
            fprintf(f, "\\u%04x", *p);
        else
            fputc(*p, f);
    }
    fputc('"', f);
}

static void j_sep(jw *j)
{
    if (!j->first[j->depth])
        fputc(',', j->f);
    j->first[j->depth] = false;
}

static void j_open(jw *j, char ch)
{
    fputc(ch, j->f);
    if (j->depth + 1 < (int)(sizeof j->first / sizeof j->first[0]))
        j->first[++j->depth] = true;
}

static void j_close(jw *j, char ch)
{
    fputc(ch, j->f);
    if (j->depth > 0)
        j->depth--;
}

static void j_key(jw *j, const char *k)
{
    j_sep(j);
    j_string(j->f, k);
    fputc(':', j->f);
}

static void j_str(jw *j, const char *k, const char *v)
{
    j_key(j, k);
    if (v)
        j_string(j->f, v);
    else
        fputs("null", j->f);
}

static void j_num(jw *j, const char *k, unsigned long v)
{
    j_key(j, k);
    fprintf(j->f, "%lu", v);
}

static void j_bool(jw *j, const char *k, bool v)
{
    j_key(j, k);
    fputs(v ? "true" : "false", j->f);
}

static void j_id(jw *j, const char *k, uint32_t id)
{
    j_key(j, k);
    fprintf(j->f, "\"0x%08X\"", id);
}

static void put_hex(FILE *f, const uint8_t *p, size_t n)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        fputc(digits[p[i] >> 4], f);
        fputc(digits[p[i] & 15], f);
    }
}

static void j_hex(jw *j, const char *k, const uint8_t *p, size_t n)
{
    j_key(j, k);
    fputc('"', j->f);
    put_hex(j->f, p, n);
    fputc('"', j->f);
}

/* The opening of every successful JSON answer. */
static jw j_begin(const se_ctx *c)
{
    jw j = { .f = stdout };
    char cmd[32];

    j_open(&j, '{');
    j_bool(&j, "ok", true);
    snprintf(cmd, sizeof cmd, "se %s", c->cmd->name);
    j_str(&j, "command", cmd);
    return j;
}

static void j_end(jw *j)
{
    j_close(j, '}');
    fputc('\n', j->f);
}

/* ---- errors ------------------------------------------------------------------ */

__attribute__((format(printf, 2, 3))) static int fail(const se_ctx *c, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(stderr, "edgeauth se %s: %s\n", c->cmd->name, msg);
    if (c->json) {
        jw j = { .f = stdout };
        char cmd[32];
        snprintf(cmd, sizeof cmd, "se %s", c->cmd->name);
        j_open(&j, '{');
        j_bool(&j, "ok", false);
        j_str(&j, "command", cmd);
        j_str(&j, "error", msg);
        j_end(&j);
    }
    return EXIT_FAIL;
}

static const char *uri_shown(const se_ctx *c, char *buf, size_t cap)
{
    if (c->h)
        return ea_host_uri(c->h);
    if (c->uri)
        return c->uri;
    if (ea_host_default_uri(buf, cap) == EA_OK)
        return buf;
    return "(default)";
}

/* A failed host call, in the user's terms. action is what the policy of id
 * would have to allow ("read", "sign"...). */
static int host_fail(se_ctx *c, ea_err rc, uint32_t id, const char *action)
{
    char why[400], ub[1100];
    bool exists = true;

    /* ea_host_exists below overwrites the session's message: keep it. */
    snprintf(why, sizeof why, "%s", *ea_host_last_error(c->h) ? ea_host_last_error(c->h) : ea_err_str(rc));
    if (rc == EA_ERR_DENIED && id && action)
        return fail(c, "policy of 0x%08X forbids %s", id, action);
    if (rc == EA_ERR_CONDITIONS && id && ea_host_exists(c->h, id, &exists) == EA_OK && !exists)
        return fail(c, "object 0x%08X does not exist", id);
    if (rc == EA_ERR_IO || rc == EA_ERR_TIMEOUT)
        return fail(c, "lost the secure element at %s: %s", uri_shown(c, ub, sizeof ub), why);
    if (id && !strstr(why, "0x"))
        return fail(c, "0x%08X: %s", id, why);
    return fail(c, "%s", why);
}

/* ---- files ------------------------------------------------------------------- */

/* Read a whole input file of at most max bytes (never echoed anywhere). */
static int read_input(const se_ctx *c, const char *what, const char *path, size_t max, uint8_t **buf,
                      size_t *len)
{
    errno = 0;
    ea_err rc = ea_file_read(path, max, buf, len);

    if (rc == EA_OK)
        return 0;
    if (rc == EA_ERR_FULL)
        return fail(c, "%s %s is larger than %zu bytes", what, path, max);
    if (rc == EA_ERR_NOT_FOUND)
        return fail(c, "%s %s does not exist", what, path);
    return fail(c, "cannot read %s %s: %s", what, path, errno ? strerror(errno) : ea_err_str(rc));
}

static int write_output(const se_ctx *c, const char *path, const void *p, size_t n, unsigned mode)
{
    errno = 0;
    ea_err rc = ea_file_write_atomic(path, p, n, mode);
    if (rc == EA_OK)
        return 0;
    return fail(c, "cannot write %s: %s", path, errno ? strerror(errno) : ea_err_str(rc));
}

/* ---- argument parsing -------------------------------------------------------- */

/* 0x-hex (1..8 digits) or decimal; 0 is not an object id. */
static bool parse_u32(const char *s, uint32_t *out)
{
    unsigned long long v = 0;
    bool hex = s[0] == '0' && (s[1] == 'x' || s[1] == 'X');
    const char *p = hex ? s + 2 : s;
    size_t n = 0;

    for (; *p; p++, n++) {
        int d;
        if (*p >= '0' && *p <= '9')
            d = *p - '0';
        else if (hex && *p >= 'a' && *p <= 'f')
            d = *p - 'a' + 10;
        else if (hex && *p >= 'A' && *p <= 'F')
            d = *p - 'A' + 10;
        else
            return false;
        v = v * (hex ? 16u : 10u) + (unsigned)d;
        if (v > 0xFFFFFFFFu)
            return false;
    }
    if (n == 0)
        return false;
    *out = (uint32_t)v;
    return true;
}

static bool parse_id(const char *s, uint32_t *out)
{
    return parse_u32(s, out) && *out != 0;
}

static bool parse_curve(const char *s, uint8_t *curve, const char **name)
{
    static const struct { const char *alias; uint8_t curve; const char *name; } cv[] = {
        { "P-256", EA_CURVE_NIST_P256, "P-256" },     { "P256", EA_CURVE_NIST_P256, "P-256" },
        { "prime256v1", EA_CURVE_NIST_P256, "P-256" }, { "secp256r1", EA_CURVE_NIST_P256, "P-256" },
        { "P-384", EA_CURVE_NIST_P384, "P-384" },     { "P384", EA_CURVE_NIST_P384, "P-384" },
        { "secp384r1", EA_CURVE_NIST_P384, "P-384" },
    };
    for (size_t i = 0; i < sizeof cv / sizeof cv[0]; i++) {
        if (!strcasecmp(s, cv[i].alias)) {
            *curve = cv[i].curve;
            *name = cv[i].name;
            return true;
        }
    }
    return false;
}

/* "sign,read" -> AR bits; "none" = no rights at all. */
static bool parse_policy(const char *s, uint32_t *ar, const char **bad)
{
    char word[32];
    uint32_t v = 0;

    if (!strcmp(s, "none")) {
        *ar = 0;
        return true;
    }
    while (*s) {
        size_t n = strcspn(s, ",");
        bool found = false;
        if (n == 0 || n >= sizeof word) {
            *bad = n == 0 ? "(empty)" : s;
            return false;
        }
        memcpy(word, s, n);
        word[n] = '\0';
        for (size_t i = 0; i < sizeof pol_words / sizeof pol_words[0]; i++) {
            if (pol_words[i].settable && !strcasecmp(word, pol_words[i].word)) {
                v |= pol_words[i].bit;
                found = true;
            }
        }
        if (!found) {
            *bad = s;
            return false;
        }
        s += n;
        if (*s == ',' && !*++s) {
            *bad = "(empty)";
            return false;
        }
    }
    *ar = v;
    return true;
}

static const struct se_cmd *find_cmd(const char *name)
{
    for (size_t i = 0; i < sizeof se_cmds / sizeof se_cmds[0]; i++)
        if (!strcmp(se_cmds[i].name, name))
            return &se_cmds[i];
    return NULL;
}

static void se_usage(FILE *f)
{
    fprintf(f, "usage: edgeauth [--se URI] se COMMAND [OPTIONS] [--json]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof se_cmds / sizeof se_cmds[0]; i++)
        fprintf(f, "  %-7s %s\n", se_cmds[i].name, se_cmds[i].desc);
    fprintf(f, "\nedgeauth se COMMAND --help shows the options of COMMAND.\n"
               "The SE is --se URI, else $EDGEAUTH_SE, else a per-user emulated chip.\n");
}

static void cmd_help(const struct se_cmd *sc)
{
    printf("usage: edgeauth [--se URI] se %s [--json]\n\n%s.\n\noptions:\n", sc->usage, sc->desc);
    for (size_t i = 0; i < sizeof opt_defs / sizeof opt_defs[0]; i++) {
        if (!(sc->opts & (1u << i)))
            continue;
        char left[40];
        snprintf(left, sizeof left, "--%s%s%s", opt_defs[i].name, opt_defs[i].arg ? " " : "",
                 opt_defs[i].arg ? opt_defs[i].arg : "");
        printf("  %-20s ", left);
        for (const char *p = opt_defs[i].help; *p; p++) {
            putchar(*p);
            if (*p == '\n')
                printf("  %-20s ", "");
        }
        putchar('\n');
    }
    printf("  %-20s %s\n  %-20s %s\n", "--json", "one compact JSON object on stdout", "--se URI",
           "the secure element (same as before `se`)");
}

__attribute__((format(printf, 2, 3))) static int usage_error(const struct se_cmd *sc, const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "edgeauth se %s: ", sc->name);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nusage: edgeauth [--se URI] se %s [--json]\n", sc->usage);
    return EXIT_USAGE;
}

/* The value of option opt_defs[i] into the arguments; non-zero = usage error. */
static int take_option(se_ctx *c, size_t i, const char *v)
{
    const unsigned bit = 1u << i;
    const struct se_cmd *sc = c->cmd;
    se_args *a = &c->a;
    const char *bad = NULL;

    switch (bit) {
    case OPT_ID:
        if (!parse_id(v, &a->id))
            return usage_error(sc, "--id: '%s' is not an object id (0x-hex or decimal, not 0)", v);
        break;
    case OPT_ATTEST_KEY:
        if (!parse_id(v, &a->attest_key))
            return usage_error(sc, "--attest-key: '%s' is not an object id", v);
        break;
    case OPT_ATTEST_CERT:
        if (!parse_id(v, &a->attest_cert))
            return usage_error(sc, "--attest-cert: '%s' is not an object id", v);
        break;
    case OPT_CURVE:
        if (!parse_curve(v, &a->curve, &a->curve_name))
            return usage_error(sc, "--curve: '%s' is not P-256 or P-384", v);
        break;
    case OPT_POLICY:
        if (!parse_policy(v, &a->policy_ar, &bad))
            return usage_error(sc, "--policy: unknown word at '%s' (see --help)", bad);
        break;
    case OPT_ALG:
        for (size_t k = 0; k < sizeof algs / sizeof algs[0]; k++)
            if (!strcasecmp(v, algs[k].name))
                a->alg = &algs[k];
        if (!a->alg)
            return usage_error(sc, "--alg: '%s' is not sha1, sha224, sha256, sha384 or sha512", v);
        break;
    case OPT_OUT:
    case OPT_IN:
    case OPT_SIG:
    case OPT_VENDOR_CA:
        if (!*v)
            return usage_error(sc, "--%s: empty file name", opt_defs[i].name);
        if (bit == OPT_OUT)
            a->out = v;
        else if (bit == OPT_IN)
            a->in = v;
        else if (bit == OPT_SIG)
            a->sig = v;
        else
            a->vendor_ca = v;
        break;
    default: /* flags */
        break;
    }
    return 0;
}

/* Parse argv (argv[0] = "edgeauth se CMD"); -1 = --help shown. */
static int parse_args(se_ctx *c, int argc, char **argv)
{
    struct option lo[sizeof opt_defs / sizeof opt_defs[0] + 4];
    const struct se_cmd *sc = c->cmd;
    size_t n = 0;
    int o;

    for (size_t i = 0; i < sizeof opt_defs / sizeof opt_defs[0]; i++)
        lo[n++] = (struct option){ opt_defs[i].name, opt_defs[i].has_arg, NULL, OPT_CODE0 + (int)i };
    lo[n++] = (struct option){ "json", no_argument, NULL, 'j' };
    lo[n++] = (struct option){ "se", required_argument, NULL, 'S' };
    lo[n++] = (struct option){ "help", no_argument, NULL, 'h' };
    lo[n] = (struct option){ NULL, 0, NULL, 0 };

    optind = 0; /* a fresh scan: main's scan stopped at the subcommand */
    while ((o = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        if (o == 'h') {
            cmd_help(sc);
            return -1;
        }
        if (o == 'j') {
            c->json = true;
            continue;
        }
        if (o == 'S') {
            if (!*optarg)
                return usage_error(sc, "--se needs a URI");
            c->uri = optarg;
            continue;
        }
        if (o < OPT_CODE0 || o >= OPT_CODE0 + (int)(sizeof opt_defs / sizeof opt_defs[0])) {
            fprintf(stderr, "usage: edgeauth [--se URI] se %s [--json]\n", sc->usage);
            return EXIT_USAGE;
        }
        size_t i = (size_t)(o - OPT_CODE0);
        unsigned bit = 1u << i;
        if (!(sc->opts & bit))
            return usage_error(sc, "--%s does not apply to this command", opt_defs[i].name);
        if (c->a.seen & bit)
            return usage_error(sc, "--%s given twice", opt_defs[i].name);
        c->a.seen |= bit;
        int st = take_option(c, i, optarg);
        if (st)
            return st;
    }
    if (sc->count && sc->fn == se_scp03) {
        if (optind >= argc || (strcmp(argv[optind], "require") && strcmp(argv[optind], "release")))
            return usage_error(sc, "say require or release");
        c->a.scp_mode = strcmp(argv[optind], "require") == 0 ? 1 : 2;
        optind++;
    } else if (sc->count) {
        uint32_t v;
        if (optind >= argc)
            return usage_error(sc, "how many bytes? (e.g. random 32)");
        if (!parse_u32(argv[optind], &v) || v == 0 || v > RANDOM_MAX)
            return usage_error(sc, "'%s' is not a byte count from 1 to 65536", argv[optind]);
        c->a.count = v;
        optind++;
    }
    if (optind < argc)
        return usage_error(sc, "unexpected argument '%s'", argv[optind]);
    for (size_t i = 0; i < sizeof opt_defs / sizeof opt_defs[0]; i++)
        if ((sc->need & (1u << i)) && !(c->a.seen & (1u << i)))
            return usage_error(sc, "--%s is required", opt_defs[i].name);
    return 0;
}

/* ---- shared steps ------------------------------------------------------------ */

/* The type of an existing object; a missing one is named as such. */
static int lookup(se_ctx *c, uint32_t id, const char *action, type_info *t, bool *transient)
{
    uint8_t code;
    bool tr;
    ea_err rc = ea_host_read_type(c->h, id, &code, &tr);

    if (rc != EA_OK)
        return host_fail(c, rc, id, action);
    *t = type_of(code);
    if (transient)
        *transient = tr;
    return 0;
}

static int need_ec(se_ctx *c, uint32_t id, const type_info *t)
{
    if (is_ec(t))
        return 0;
    return fail(c, "0x%08X is %s %s, not an EC key", id, article(t->name), t->name);
}

/* The signature algorithm: --alg (checked against the digest), or the one
 * whose digest has this length. */
static int pick_alg(se_ctx *c, size_t dlen, const struct alg_def **out)
{
    if (c->a.alg) {
        if (c->a.alg->dlen != dlen)
            return fail(c, "the digest in %s has %zu bytes; %s needs %zu (give the raw digest, e.g. from "
                           "openssl dgst -%s -binary)",
                        c->a.in, dlen, c->a.alg->name, c->a.alg->dlen, c->a.alg->name);
        *out = c->a.alg;
        return 0;
    }
    /* Without --alg only the usual lengths are taken as digests: a 20- or
     * 28-byte file is more likely a message than a SHA-1/SHA-224 digest. */
    for (size_t i = 0; i < sizeof algs / sizeof algs[0]; i++) {
        if (algs[i].dlen == dlen && dlen >= 32) {
            *out = &algs[i];
            return 0;
        }
    }
    return fail(c, "the digest in %s has %zu bytes, which is no SHA-256/384/512 digest (give the raw digest, "
                   "e.g. from openssl dgst -sha256 -binary, or --alg)",
                c->a.in, dlen);
}

/* A SubjectPublicKeyInfo PEM (named curve) for an uncompressed point. */
static char *spki_pem(const char *group, const uint8_t *pt, size_t n)
{
    EVP_PKEY_CTX *pc = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
    EVP_PKEY *pk = NULL;
    BIO *b = BIO_new(BIO_s_mem());
    char *out = NULL, *p;
    long len;
    OSSL_PARAM prm[] = { OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, (char *)group, 0),
                         OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, (void *)pt, n),
                         OSSL_PARAM_construct_end() };

    if (pc && b && EVP_PKEY_fromdata_init(pc) > 0 && EVP_PKEY_fromdata(pc, &pk, EVP_PKEY_PUBLIC_KEY, prm) > 0 &&
        PEM_write_bio_PUBKEY(b, pk) == 1 && (len = BIO_get_mem_data(b, &p)) > 0 &&
        (out = malloc((size_t)len + 1)) != NULL) {
        memcpy(out, p, (size_t)len);
        out[len] = '\0';
    }
    BIO_free(b);
    EVP_PKEY_free(pk);
    EVP_PKEY_CTX_free(pc);
    return out;
}

/* The group for a point: the object's curve, else its length (applet 3.x
 * types name no curve). */
static const char *group_of(const type_info *t, size_t n)
{
    if (t->curve)
        return t->group;
    return n == 65 ? "P-256" : n == 97 ? "P-384" : n == 133 ? "P-521" : NULL;
}

/* ---- info -------------------------------------------------------------------- */

static int se_info(se_ctx *c)
{
    ea_se_version v;
    uint8_t uid[EA_UNIQUE_ID_LEN];
    uint16_t persistent, reset, deselect;
    char ver[16];
    ea_err rc;

    if ((rc = ea_host_get_version(c->h, &v)) != EA_OK)
        return host_fail(c, rc, 0, NULL);
    if ((rc = ea_host_unique_id(c->h, uid)) != EA_OK)
        return host_fail(c, rc, EA_OBJ_UNIQUE_ID, "read");
    if ((rc = ea_host_free_memory(c->h, EA_MEM_PERSISTENT, &persistent)) != EA_OK ||
        (rc = ea_host_free_memory(c->h, EA_MEM_TRANSIENT_RESET, &reset)) != EA_OK ||
        (rc = ea_host_free_memory(c->h, EA_MEM_TRANSIENT_DESELECT, &deselect)) != EA_OK)
        return host_fail(c, rc, 0, NULL);
    snprintf(ver, sizeof ver, "%u.%u.%u", v.major, v.minor, v.patch);

    if (c->json) {
        jw j = j_begin(c);
        char b[16];
        j_str(&j, "applet_version", ver);
        snprintf(b, sizeof b, "0x%04X", v.features);
        j_str(&j, "features", b);
        snprintf(b, sizeof b, "%u.%u", v.securebox >> 8, v.securebox & 0xFFu);
        j_str(&j, "securebox_version", b);
        j_hex(&j, "unique_id", uid, sizeof uid);
        j_num(&j, "free_persistent", persistent);
        j_bool(&j, "free_persistent_at_least", persistent == 0x7FFF);
        j_num(&j, "free_transient_reset", reset);
        j_num(&j, "free_transient_deselect", deselect);
        j_str(&j, "transport", ea_host_transport(c->h));
        j_str(&j, "uri", ea_host_uri(c->h));
        j_bool(&j, "scp03", ea_host_secure(c->h));
        j_end(&j);
        return 0;
    }
    printf("applet version   %s (features 0x%04X, secure box %u.%u)\n", ver, v.features, v.securebox >> 8,
           v.securebox & 0xFFu);
    printf("unique id        ");
    put_hex(stdout, uid, sizeof uid);
    printf("\nfree persistent  %s%u bytes\n", persistent == 0x7FFF ? "at least " : "", persistent);
    printf("free transient   %u bytes (cleared on reset), %u bytes (cleared on deselect)\n", reset, deselect);
    printf("transport        %s\n", ea_host_transport(c->h));
    printf("uri              %s\n", ea_host_uri(c->h));
    printf("channel          %s\n",
           ea_host_secure(c->h) ? "Platform SCP03 (C-MAC, C-DEC, R-MAC, R-ENC)" : "plain");
    return 0;
}

/* ---- scp03 ------------------------------------------------------------------- */

static int se_scp03(se_ctx *c)
{
    bool require = c->a.scp_mode == 1;
    if (!ea_host_secure(c->h))
        return fail(c, "SetPlatformSCPRequest must travel through Platform SCP03: give the keys "
                       "with ?scp03=FILE on the SE URI or EDGEAUTH_SE_SCP03");
    ea_err rc = ea_host_set_platform_scp(c->h, require);
    if (rc != EA_OK)
        return host_fail(c, rc, 0, "scp03");
    if (c->json) {
        jw j = j_begin(c);
        j_bool(&j, "scp03_required", require);
        j_end(&j);
    } else {
        printf(require ? "the chip now refuses every command outside Platform SCP03\n"
                       : "the chip accepts plain commands again\n");
    }
    return 0;
}

/* ---- list -------------------------------------------------------------------- */

typedef struct row {
    uint32_t id;
    bool have_type, have_size, have_attrs;
    type_info type;
    bool transient;
    uint16_t size;
    attrs at;
} row;

/* Policy and origin of an object, from an attested read's attributes (the
 * only command that reports them). Not a proof: the signature is not
 * checked here; `se attest` does that. */
static bool read_attrs(se_ctx *c, uint32_t id, attrs *at)
{
    uint8_t fresh[EA_FRESHNESS_LEN];
    ea_attestation *att = malloc(sizeof *att);
    bool ok = att && RAND_bytes(fresh, sizeof fresh) == 1 &&
              ea_host_read_attested(c->h, id, EA_OBJ_ATTEST_KEY, EA_SIG_ECDSA_SHA256, fresh, att) == EA_OK &&
              parse_attrs(att->attrs, att->attrs_len, at) && at->id == id;

    free(att);
    return ok;
}

/* A chip that refuses the attestation still gets its list, with "?" for
 * policy and origin. */
static void row_fill(se_ctx *c, row *r)
{
    uint8_t code;

    if (ea_host_read_type(c->h, r->id, &code, &r->transient) == EA_OK) {
        r->have_type = true;
        r->type = type_of(code);
    }
    r->have_size = ea_host_read_size(c->h, r->id, &r->size) == EA_OK;
    r->have_attrs = read_attrs(c, r->id, &r->at);
}

static int list_ids(se_ctx *c, uint32_t **ids, size_t *n)
{
    size_t cap = 64;
    ea_err rc;

    for (;;) {
        uint32_t *p = realloc(*ids, cap * sizeof *p);
        if (!p)
            return fail(c, "out of memory");
        *ids = p;
        *n = cap;
        rc = ea_host_list(c->h, 0xFF, *ids, n);
        if (rc != EA_ERR_BUF_TOO_SMALL || cap >= LIST_MAX)
            break;
        cap *= 2;
    }
    return rc == EA_OK ? 0 : host_fail(c, rc, 0, NULL);
}

static void list_json(se_ctx *c, const row *rows, size_t n)
{
    jw j = j_begin(c);

    j_key(&j, "objects");
    j_open(&j, '[');
    for (size_t i = 0; i < n; i++) {
        const row *r = &rows[i];
        j_sep(&j);
        j_open(&j, '{');
        j_id(&j, "id", r->id);
        j_str(&j, "type", r->have_type ? r->type.name : NULL);
        if (r->have_type)
            j_num(&j, "type_code", r->type.code);
        else
            j_str(&j, "type_code", NULL);
        if (r->have_size)
            j_num(&j, "size", r->size);
        else
            j_str(&j, "size", NULL);
        j_str(&j, "storage", r->have_type ? (r->transient ? "transient" : "persistent") : NULL);
        j_str(&j, "origin", r->have_attrs ? origin_word(r->at.origin) : NULL);
        j_str(&j, "policy", r->have_attrs ? r->at.policy : NULL);
        j_close(&j, '}');
    }
    j_close(&j, ']');
    j_end(&j);
}

static void list_table(const row *rows, size_t n)
{
    int tw = 4;

    for (size_t i = 0; i < n; i++)
        if (rows[i].have_type && (int)strlen(rows[i].type.name) > tw)
            tw = (int)strlen(rows[i].type.name);
    printf("%-10s  %-*s  %5s  %-10s  %-11s  %s\n", "ID", tw, "TYPE", "SIZE", "STORAGE", "ORIGIN", "POLICY");
    for (size_t i = 0; i < n; i++) {
        const row *r = &rows[i];
        char size[8];
        snprintf(size, sizeof size, "%u", r->size);
        printf("0x%08X  %-*s  %5s  %-10s  %-11s  %s\n", r->id, tw, r->have_type ? r->type.name : "?",
               r->have_size ? size : "?", r->have_type ? (r->transient ? "transient" : "persistent") : "?",
               r->have_attrs ? origin_word(r->at.origin) : "?", r->have_attrs ? r->at.policy : "?");
    }
    if (n == 0)
        printf("(no objects)\n");
}

static int se_list(se_ctx *c)
{
    uint32_t *ids = NULL;
    row *rows = NULL;
    size_t n = 0;
    int st = list_ids(c, &ids, &n);

    if (st == 0 && n > 0 && !(rows = calloc(n, sizeof *rows)))
        st = fail(c, "out of memory");
    for (size_t i = 0; st == 0 && i < n; i++) {
        rows[i].id = ids[i];
        row_fill(c, &rows[i]);
    }
    if (st == 0 && c->json)
        list_json(c, rows, n);
    else if (st == 0)
        list_table(rows, n);
    free(rows);
    free(ids);
    return st;
}

/* ---- keygen ------------------------------------------------------------------ */

/* An existing object is regenerated only on --force, and only if it is a
 * key pair on the requested curve: a typo must not destroy a device key. */
static int keygen_check_existing(se_ctx *c, bool *exists)
{
    ea_err rc = ea_host_exists(c->h, c->a.id, exists);
    type_info t;
    int st;

    if (rc != EA_OK)
        return host_fail(c, rc, c->a.id, NULL);
    if (!*exists)
        return 0;
    if (!(c->a.seen & OPT_FORCE))
        return fail(c, "object 0x%08X already exists (delete it first, or --force to regenerate the key "
                       "pair in place)",
                    c->a.id);
    if ((st = lookup(c, c->a.id, NULL, &t, NULL)) != 0)
        return st;
    if (t.kind != K_EC_PAIR || !t.curve || strcmp(t.curve, c->a.curve_name) != 0)
        return fail(c, "0x%08X is %s %s; --force regenerates only an EC %s key pair", c->a.id, article(t.name),
                    t.name, c->a.curve_name);
    if (c->a.seen & OPT_POLICY)
        return fail(c, "0x%08X exists and keeps its policy; --policy applies only to a new object", c->a.id);
    if (c->a.seen & OPT_TRANSIENT)
        return fail(c, "0x%08X exists; --transient applies only to a new object", c->a.id);
    return 0;
}

static int se_keygen(se_ctx *c)
{
    ea_policy pol = ea_policy_everyone(c->a.policy_ar);
    bool have_pol = c->a.seen & OPT_POLICY, transient = c->a.seen & OPT_TRANSIENT, exists = false, have_pub;
    uint8_t pub[160];
    size_t pub_len = sizeof pub;
    char words[POLICY_TEXT];
    ea_err rc;
    int st;

    if ((st = keygen_check_existing(c, &exists)) != 0)
        return st;
    rc = ea_host_ec_generate(c->h, c->a.id, c->a.curve, have_pol ? &pol : NULL, transient);
    if (rc != EA_OK)
        return host_fail(c, rc, c->a.id, "regeneration (gen)");
    /* The public half, when the new policy lets us read it. */
    have_pub = ea_host_read_pubkey(c->h, c->a.id, pub, &pub_len) == EA_OK;
    if (have_pol)
        ar_words(c->a.policy_ar, words, sizeof words);
    else
        snprintf(words, sizeof words, "%s", exists ? "unchanged" : "chip default");

    if (c->json) {
        jw j = j_begin(c);
        j_id(&j, "id", c->a.id);
        j_str(&j, "curve", c->a.curve_name);
        j_bool(&j, "regenerated", exists);
        j_bool(&j, "transient", transient);
        j_str(&j, "policy", words);
        if (have_pub)
            j_hex(&j, "public_key", pub, pub_len);
        else
            j_str(&j, "public_key", NULL);
        j_end(&j);
    } else {
        printf("%s EC %s key pair 0x%08X inside the chip (%s, policy: %s)\n", exists ? "regenerated" : "generated",
               c->a.curve_name, c->a.id, transient ? "transient" : "persistent", words);
        if (have_pub) {
            printf("public key ");
            put_hex(stdout, pub, pub_len);
            printf("\n");
        } else {
            printf("public key not readable (its policy does not allow read)\n");
        }
    }
    if (transient)
        fprintf(stderr, "edgeauth se keygen: note: a transient object lives only as long as its session; "
                        "0x%08X is gone when this command exits\n",
                c->a.id);
    return 0;
}

/* ---- pubkey ------------------------------------------------------------------ */

static int se_pubkey(se_ctx *c)
{
    uint8_t pt[160];
    size_t n = sizeof pt;
    type_info t;
    char *pem = NULL;
    const char *group;
    ea_err rc;
    int st;

    if ((st = lookup(c, c->a.id, "read", &t, NULL)) != 0 || (st = need_ec(c, c->a.id, &t)) != 0)
        return st;
    if (t.kind == K_EC_PRIV)
        return fail(c, "0x%08X holds only a private key; it has no public key to read", c->a.id);
    if ((rc = ea_host_read_pubkey(c->h, c->a.id, pt, &n)) != EA_OK)
        return host_fail(c, rc, c->a.id, "read");
    group = group_of(&t, n);
    if (c->a.seen & OPT_PEM) {
        if (!group)
            return fail(c, "0x%08X is an %s key: no PEM encoding for it here (leave out --pem)", c->a.id,
                        t.curve ? t.curve : "unknown-curve");
        if (!(pem = spki_pem(group, pt, n)))
            return fail(c, "0x%08X: the chip's public key is not a valid %s point", c->a.id, group);
    }
    if (c->a.out) {
        st = pem ? write_output(c, c->a.out, pem, strlen(pem), 0644) : write_output(c, c->a.out, pt, n, 0644);
        if (st) {
            free(pem);
            return st;
        }
    }
    if (c->json) {
        jw j = j_begin(c);
        j_id(&j, "id", c->a.id);
        j_str(&j, "type", t.name);
        j_str(&j, "curve", group);
        j_hex(&j, "public_key", pt, n);
        if (pem)
            j_str(&j, "pem", pem);
        if (c->a.out)
            j_str(&j, "out", c->a.out);
        j_end(&j);
    } else if (c->a.out) {
        printf("public key of 0x%08X (%s) written to %s (%s)\n", c->a.id, t.name, c->a.out,
               pem ? "PEM" : "raw uncompressed point");
    } else if (pem) {
        fputs(pem, stdout);
    } else {
        put_hex(stdout, pt, n);
        putchar('\n');
    }
    free(pem);
    return 0;
}

/* ---- delete ------------------------------------------------------------------ */

static int se_delete(se_ctx *c)
{
    ea_err rc = ea_host_delete(c->h, c->a.id);
    bool exists = false;
    attrs at;

    /* The chip answers "conditions not satisfied" for an object that no
     * policy can release: say which kind it is. */
    if (rc == EA_ERR_CONDITIONS && ea_host_exists(c->h, c->a.id, &exists) == EA_OK && exists) {
        if (c->a.id == EA_OBJ_UNIQUE_ID)
            return fail(c, "0x%08X is the chip's unique id; the chip refuses to delete it", c->a.id);
        if (read_attrs(c, c->a.id, &at) && at.origin == EA_ORIGIN_PROVISIONED)
            return fail(c, "0x%08X was provisioned by the SE vendor; the chip refuses to delete it", c->a.id);
    }
    if (rc != EA_OK)
        return host_fail(c, rc, c->a.id, "delete");
    if (c->json) {
        jw j = j_begin(c);
        j_id(&j, "id", c->a.id);
        j_bool(&j, "deleted", true);
        j_end(&j);
    } else {
        printf("deleted 0x%08X\n", c->a.id);
    }
    return 0;
}

/* ---- random ------------------------------------------------------------------ */

static int se_random(se_ctx *c)
{
    size_t n = c->a.count;
    uint8_t *buf = malloc(n);
    ea_err rc;
    int st = 0;

    if (!buf)
        return fail(c, "out of memory");
    if ((rc = ea_host_get_random(c->h, buf, n)) != EA_OK) {
        st = host_fail(c, rc, 0, NULL);
        goto out;
    }
    /* Random bytes often become keys: the file is private. */
    if (c->a.out && (st = write_output(c, c->a.out, buf, n, 0600)) != 0)
        goto out;
    if (c->json) {
        jw j = j_begin(c);
        j_num(&j, "bytes", n);
        if (c->a.out)
            j_str(&j, "out", c->a.out);
        else
            j_hex(&j, "random", buf, n);
        j_end(&j);
    } else if (c->a.out) {
        printf("%zu random bytes from the chip written to %s\n", n, c->a.out);
    } else {
        put_hex(stdout, buf, n);
        putchar('\n');
    }
out:
    ea_cleanse(buf, n);
    free(buf);
    return st;
}

/* ---- write ------------------------------------------------------------------- */

/* An existing object must be a binary file of the same size: the chip
 * keeps a file's length, so a shorter write would leave old bytes behind. */
static int write_check_existing(se_ctx *c, size_t len, bool *exists)
{
    type_info t;
    uint16_t size;
    ea_err rc = ea_host_exists(c->h, c->a.id, exists);
    int st;

    if (rc != EA_OK)
        return host_fail(c, rc, c->a.id, NULL);
    if (!*exists)
        return 0;
    if ((st = lookup(c, c->a.id, "write", &t, NULL)) != 0)
        return st;
    if (t.kind != K_BINARY)
        return fail(c, "0x%08X is %s %s, not a binary file", c->a.id, article(t.name), t.name);
    if ((rc = ea_host_read_size(c->h, c->a.id, &size)) != EA_OK)
        return host_fail(c, rc, c->a.id, "read");
    if (size != len)
        return fail(c, "0x%08X is a %u-byte file and %s has %zu bytes; delete it first to change its size",
                    c->a.id, size, c->a.in, len);
    if (c->a.seen & OPT_POLICY)
        return fail(c, "0x%08X exists and keeps its policy; --policy applies only to a new file", c->a.id);
    return 0;
}

static int se_write(se_ctx *c)
{
    ea_policy pol = ea_policy_everyone(c->a.policy_ar);
    uint8_t *data = NULL;
    size_t len = 0;
    bool exists = false;
    ea_err rc;
    int st;

    if ((st = read_input(c, "input file", c->a.in, BINARY_MAX, &data, &len)) != 0)
        return st;
    if (len == 0) {
        st = fail(c, "input file %s is empty", c->a.in);
        goto out;
    }
    if ((st = write_check_existing(c, len, &exists)) != 0)
        goto out;
    rc = ea_host_write_binary(c->h, c->a.id, data, len, (c->a.seen & OPT_POLICY) ? &pol : NULL);
    if (rc != EA_OK) {
        st = host_fail(c, rc, c->a.id, "write");
        goto out;
    }
    if (c->json) {
        jw j = j_begin(c);
        j_id(&j, "id", c->a.id);
        j_num(&j, "bytes", len);
        j_bool(&j, "created", !exists);
        j_end(&j);
    } else {
        printf("wrote %zu bytes to 0x%08X (%s)\n", len, c->a.id, exists ? "overwritten" : "new binary file");
    }
out:
    ea_cleanse(data, len);
    free(data);
    return st;
}

/* ---- read -------------------------------------------------------------------- */

static int se_read(se_ctx *c)
{
    type_info t;
    uint8_t *buf = NULL;
    size_t n = 0, cap = 1024;
    ea_err rc = EA_ERR_INTERNAL;
    int st;

    if ((st = lookup(c, c->a.id, "read", &t, NULL)) != 0)
        return st;
    if (t.kind == K_SECRET || t.kind == K_EC_PRIV)
        return fail(c, "0x%08X is %s %s: its value never leaves the secure element", c->a.id, article(t.name),
                    t.name);
    for (int tries = 0; tries < 3; tries++) {
        uint8_t *p = realloc(buf, cap);
        if (!p) {
            free(buf);
            return fail(c, "out of memory");
        }
        buf = p;
        n = cap;
        rc = ea_host_read_object(c->h, c->a.id, buf, &n);
        if (rc != EA_ERR_BUF_TOO_SMALL || n <= cap)
            break;
        cap = n; /* the size needed */
    }
    if (rc != EA_OK) {
        st = host_fail(c, rc, c->a.id, "read");
        goto out;
    }
    if (c->a.out && (st = write_output(c, c->a.out, buf, n, 0644)) != 0)
        goto out;
    if (c->json) {
        jw j = j_begin(c);
        j_id(&j, "id", c->a.id);
        j_str(&j, "type", t.name);
        j_num(&j, "bytes", n);
        if (c->a.out)
            j_str(&j, "out", c->a.out);
        else
            j_hex(&j, "data", buf, n);
        j_end(&j);
    } else if (c->a.out) {
        printf("%zu bytes of 0x%08X (%s) written to %s\n", n, c->a.id, t.name, c->a.out);
    } else {
        put_hex(stdout, buf, n);
        putchar('\n');
    }
out:
    free(buf);
    return st;
}

/* ---- sign / verify ----------------------------------------------------------- */

static int load_digest(se_ctx *c, uint8_t *dg, size_t *dlen, const struct alg_def **alg)
{
    uint8_t *buf = NULL;
    size_t n = 0;
    int st = read_input(c, "digest file", c->a.in, DIGEST_MAX, &buf, &n);

    if (st == 0 && (st = pick_alg(c, n, alg)) == 0) {
        memcpy(dg, buf, n);
        *dlen = n;
    }
    free(buf);
    return st;
}

static int se_sign(se_ctx *c)
{
    const struct alg_def *alg = NULL;
    uint8_t dg[DIGEST_MAX], sig[160];
    size_t dlen = 0, slen = sizeof sig;
    type_info t;
    ea_err rc;
    int st;

    if ((st = load_digest(c, dg, &dlen, &alg)) != 0 || (st = lookup(c, c->a.id, "sign", &t, NULL)) != 0 ||
        (st = need_ec(c, c->a.id, &t)) != 0)
        return st;
    if ((rc = ea_host_ecdsa_sign(c->h, c->a.id, alg->algo, dg, dlen, sig, &slen)) != EA_OK)
        return host_fail(c, rc, c->a.id, "sign");
    if (c->a.out && (st = write_output(c, c->a.out, sig, slen, 0644)) != 0)
        return st;
    if (c->json) {
        jw j = j_begin(c);
        j_id(&j, "id", c->a.id);
        j_str(&j, "alg", alg->name);
        j_hex(&j, "signature", sig, slen);
        if (c->a.out)
            j_str(&j, "out", c->a.out);
        j_end(&j);
    } else if (c->a.out) {
        printf("ECDSA-%s signature by 0x%08X (DER, %zu bytes) written to %s\n", alg->name, c->a.id, slen,
               c->a.out);
    } else {
        put_hex(stdout, sig, slen);
        putchar('\n');
    }
    return 0;
}

/* A DER signature, or the hex that `se sign` prints. */
static int load_sig(se_ctx *c, uint8_t *sig, size_t *slen)
{
    uint8_t *buf = NULL;
    size_t n = 0;
    int st = read_input(c, "signature file", c->a.sig, SIG_FILE_MAX, &buf, &n);

    if (st)
        return st;
    if (n > 0 && buf[0] == 0x30) { /* DER SEQUENCE; hex text never starts with byte 30 */
        if (n > *slen)
            st = fail(c, "signature file %s has %zu bytes, too long for an ECDSA signature", c->a.sig, n);
        else {
            memcpy(sig, buf, n);
            *slen = n;
        }
    } else {
        char *text = malloc(n + 1);
        if (!text) {
            st = fail(c, "out of memory");
        } else {
            memcpy(text, buf, n);
            text[n] = '\0';
            if (ea_hex_decode(text, sig, slen) != EA_OK || *slen == 0)
                st = fail(c, "signature file %s is neither DER nor hex", c->a.sig);
            free(text);
        }
    }
    free(buf);
    return st;
}

static int se_verify(se_ctx *c)
{
    const struct alg_def *alg = NULL;
    uint8_t dg[DIGEST_MAX], sig[256];
    size_t dlen = 0, slen = sizeof sig;
    bool valid = false;
    type_info t;
    ea_err rc;
    int st;

    if ((st = load_digest(c, dg, &dlen, &alg)) != 0 || (st = load_sig(c, sig, &slen)) != 0 ||
        (st = lookup(c, c->a.id, "verify", &t, NULL)) != 0 || (st = need_ec(c, c->a.id, &t)) != 0)
        return st;
    if ((rc = ea_host_ecdsa_verify(c->h, c->a.id, alg->algo, dg, dlen, sig, slen, &valid)) != EA_OK)
        return host_fail(c, rc, c->a.id, "verify");
    if (c->json) {
        jw j = j_begin(c);
        j_id(&j, "id", c->a.id);
        j_str(&j, "alg", alg->name);
        j_bool(&j, "valid", valid);
        j_end(&j);
    } else {
        printf("signature %s (ECDSA-%s, key 0x%08X, checked by the chip)\n", valid ? "valid" : "NOT valid",
               alg->name, c->a.id);
    }
    return valid ? 0 : EXIT_FAIL;
}

/* ---- attest ------------------------------------------------------------------ */

typedef struct proof {
    ea_attestation att;
    uint8_t fresh[EA_FRESHNESS_LEN];
    uint8_t uid[EA_UNIQUE_ID_LEN];
    attrs at;
    type_info type;
    X509 *cert;
    STACK_OF(X509) *anchors;
    char cert_subject[256], anchor_subject[256];
    bool cert_names_uid;
} proof;

static void name_text(const X509_NAME *nm, char *buf, size_t cap)
{
    BIO *b = BIO_new(BIO_s_mem());
    char *p;
    long n;

    buf[0] = '\0';
    if (b && X509_NAME_print_ex(b, nm, 0, (XN_FLAG_ONELINE & ~XN_FLAG_SPC_EQ) & ~ASN1_STRFLGS_ESC_MSB) >= 0 &&
        (n = BIO_get_mem_data(b, &p)) > 0)
        snprintf(buf, cap, "%.*s", (int)n, p);
    BIO_free(b);
}

static int load_anchors(se_ctx *c, proof *pf)
{
    BIO *b;
    X509 *x;

    errno = 0;
    if (!(b = BIO_new_file(c->a.vendor_ca, "r")))
        return fail(c, "cannot read vendor CA %s: %s", c->a.vendor_ca, errno ? strerror(errno) : "unreadable");
    pf->anchors = sk_X509_new_null();
    while (pf->anchors && (x = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL) {
        if (!sk_X509_push(pf->anchors, x)) {
            X509_free(x);
            break;
        }
    }
    BIO_free(b);
    if (!pf->anchors || sk_X509_num(pf->anchors) == 0)
        return fail(c, "no PEM certificate in vendor CA file %s", c->a.vendor_ca);
    return 0;
}

/* The attested read itself: who refused what, in words. */
static int attested_read(se_ctx *c, proof *pf)
{
    ea_err rc;
    bool exists = true;
    char why[400];

    if (RAND_bytes(pf->fresh, sizeof pf->fresh) != 1)
        return fail(c, "no randomness for the freshness");
    rc = ea_host_read_attested(c->h, c->a.id, c->a.attest_key, EA_SIG_ECDSA_SHA256, pf->fresh, &pf->att);
    if (rc == EA_OK)
        return 0;
    snprintf(why, sizeof why, "%s", *ea_host_last_error(c->h) ? ea_host_last_error(c->h) : ea_err_str(rc));
    if (rc == EA_ERR_DENIED) /* only the attesting key's policy is checked */
        return fail(c, "policy of 0x%08X forbids attestation (attest)", c->a.attest_key);
    if (rc == EA_ERR_CONDITIONS) {
        if (ea_host_exists(c->h, c->a.id, &exists) == EA_OK && !exists)
            return fail(c, "object 0x%08X does not exist", c->a.id);
        if (ea_host_exists(c->h, c->a.attest_key, &exists) == EA_OK && !exists)
            return fail(c, "attestation key 0x%08X does not exist", c->a.attest_key);
        return fail(c, "0x%08X cannot attest: %s", c->a.attest_key, why);
    }
    return host_fail(c, rc, c->a.id, NULL);
}

static int read_attest_cert(se_ctx *c, proof *pf)
{
    uint8_t der[4096];
    size_t n = sizeof der;
    const unsigned char *p = der;
    ea_err rc = ea_host_read_object(c->h, c->a.attest_cert, der, &n);

    if (rc == EA_ERR_BUF_TOO_SMALL)
        return fail(c, "attestation certificate 0x%08X is larger than %zu bytes", c->a.attest_cert, sizeof der);
    if (rc != EA_OK)
        return host_fail(c, rc, c->a.attest_cert, "read");
    if (!(pf->cert = d2i_X509(NULL, &p, (long)n)) || p != der + n)
        return fail(c, "0x%08X does not hold a DER certificate", c->a.attest_cert);
    name_text(X509_get_subject_name(pf->cert), pf->cert_subject, sizeof pf->cert_subject);
    return 0;
}

/* The attestation certificate chains to the vendor CA given (used as the
 * trust anchor, root or intermediate; no purpose check). */
static int check_chain(se_ctx *c, proof *pf)
{
    X509_STORE *st = X509_STORE_new();
    X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    int ok = 0, err = X509_V_ERR_UNSPECIFIED;

    if (st && ctx) {
        for (int i = 0; i < sk_X509_num(pf->anchors); i++)
            X509_STORE_add_cert(st, sk_X509_value(pf->anchors, i));
        X509_STORE_set_flags(st, X509_V_FLAG_PARTIAL_CHAIN);
        if (X509_STORE_CTX_init(ctx, st, pf->cert, NULL) == 1) {
            ok = X509_verify_cert(ctx) == 1;
            err = X509_STORE_CTX_get_error(ctx);
            STACK_OF(X509) *chain = X509_STORE_CTX_get0_chain(ctx);
            if (ok && chain && sk_X509_num(chain) > 0)
                name_text(X509_get_subject_name(sk_X509_value(chain, sk_X509_num(chain) - 1)),
                          pf->anchor_subject, sizeof pf->anchor_subject);
        }
    }
    X509_STORE_CTX_free(ctx);
    X509_STORE_free(st);
    if (!ok)
        return fail(c, "the attestation certificate 0x%08X (%s) does not chain to the vendor CA in %s: %s",
                    c->a.attest_cert, pf->cert_subject, c->a.vendor_ca, X509_verify_cert_error_string(err));
    return 0;
}

static int check_signature(se_ctx *c, proof *pf)
{
    EVP_PKEY *pk = X509_get0_pubkey(pf->cert);
    EVP_PKEY_CTX *pc = pk ? EVP_PKEY_CTX_new(pk, NULL) : NULL;
    int ok = pc && EVP_PKEY_verify_init(pc) == 1 &&
             EVP_PKEY_verify(pc, pf->att.sig, pf->att.sig_len, pf->att.signed_hash, pf->att.signed_hash_len) == 1;

    EVP_PKEY_CTX_free(pc);
    if (!ok)
        return fail(c, "the attestation signature over 0x%08X does not verify with the key certified in "
                       "0x%08X: the answer was altered, or 0x%08X is not the certified key",
                    c->a.id, c->a.attest_cert, c->a.attest_key);
    return 0;
}

static int check_uid_and_attrs(se_ctx *c, proof *pf)
{
    char hex[2 * EA_UNIQUE_ID_LEN + 1], subject[sizeof pf->cert_subject];
    ea_err rc = ea_host_unique_id(c->h, pf->uid);

    if (rc != EA_OK)
        return host_fail(c, rc, EA_OBJ_UNIQUE_ID, "read");
    if (pf->att.uid_len != EA_UNIQUE_ID_LEN || memcmp(pf->att.uid, pf->uid, EA_UNIQUE_ID_LEN) != 0)
        return fail(c, "the attested chip id differs from this chip's unique id (0x%08X)", EA_OBJ_UNIQUE_ID);
    if (!parse_attrs(pf->att.attrs, pf->att.attrs_len, &pf->at))
        return fail(c, "the attested attributes of 0x%08X do not parse", c->a.id);
    if (pf->at.id != c->a.id)
        return fail(c, "the attestation names object 0x%08X, not 0x%08X", pf->at.id, c->a.id);
    pf->type = type_of(pf->at.type);
    /* The emulator's vendor CA writes the uid into the certificate's CN;
     * said when true, never required (real vendors name chips otherwise). */
    ea_hex_encode(pf->uid, sizeof pf->uid, hex); /* lower case */
    for (size_t i = 0; i < sizeof subject; i++)
        subject[i] = (char)tolower((unsigned char)pf->cert_subject[i]);
    pf->cert_names_uid = strstr(subject, hex) != NULL;
    return 0;
}

static void attest_value_words(const proof *pf, char *buf, size_t cap)
{
    const ea_attestation *a = &pf->att;
    uint8_t h[32];
    unsigned int hl = 0;
    char hex[2 * 160 + 1];

    if (!a->data) {
        snprintf(buf, cap, "whose value is not readable");
    } else if (is_ec(&pf->type) && a->data_len <= 160) {
        ea_hex_encode(a->data, a->data_len, hex);
        snprintf(buf, cap, "with public key %s", hex);
    } else if (EVP_Digest(a->data, a->data_len, h, &hl, EVP_sha256(), NULL) == 1) {
        ea_hex_encode(h, hl, hex);
        snprintf(buf, cap, "with %zu bytes of content (SHA-256 %s)", a->data_len, hex);
    } else {
        snprintf(buf, cap, "with %zu bytes of content", a->data_len);
    }
}

static void attest_print(se_ctx *c, const proof *pf)
{
    char uid[2 * EA_UNIQUE_ID_LEN + 1], value[400];
    const char *anchor = pf->anchor_subject[0] ? pf->anchor_subject : c->a.vendor_ca;

    ea_hex_encode(pf->uid, sizeof pf->uid, uid);
    attest_value_words(pf, value, sizeof value);
    if (c->json) {
        jw j = j_begin(c);
        j_id(&j, "id", c->a.id);
        j_str(&j, "type", pf->type.name);
        j_num(&j, "size", pf->att.size);
        j_str(&j, "origin", origin_word(pf->at.origin));
        j_str(&j, "policy", pf->at.policy);
        if (pf->att.data && is_ec(&pf->type))
            j_hex(&j, "public_key", pf->att.data, pf->att.data_len);
        else if (pf->att.data)
            j_hex(&j, "data", pf->att.data, pf->att.data_len);
        else
            j_str(&j, "data", NULL);
        j_hex(&j, "unique_id", pf->uid, sizeof pf->uid);
        j_id(&j, "attest_key", c->a.attest_key);
        j_id(&j, "attest_cert", c->a.attest_cert);
        j_str(&j, "attest_cert_subject", pf->cert_subject);
        j_bool(&j, "attest_cert_names_chip", pf->cert_names_uid);
        j_str(&j, "vendor_ca", anchor);
        j_bool(&j, "chain_valid", true);
        j_bool(&j, "signature_valid", true);
        j_hex(&j, "freshness", pf->fresh, sizeof pf->fresh);
        j_bool(&j, "freshness_matched", true);
        j_hex(&j, "timestamp", pf->att.timestamp, pf->att.timestamp_len);
        j_end(&j);
        return;
    }
    printf("object        0x%08X, %s, %u bytes, origin: %s\n", c->a.id, pf->type.name, pf->att.size,
           origin_words(pf->at.origin));
    printf("policy        %s\n", pf->at.policy);
    printf("value         %s\n", value);
    printf("chip          %s (the attested id equals the chip's unique id)\n", uid);
    printf("attested by   key 0x%08X, certificate 0x%08X: %s%s\n", c->a.attest_key, c->a.attest_cert,
           pf->cert_subject, pf->cert_names_uid ? " (names this chip)" : "");
    printf("certified by  %s (vendor CA from %s)\n", anchor, c->a.vendor_ca);
    printf("signature     valid (ECDSA-SHA256 by the certified attestation key)\n");
    printf("freshness     matched: our random ");
    put_hex(stdout, pf->fresh, sizeof pf->fresh);
    printf(" is in the signed command\n\n");
    printf("proven: object 0x%08X (%s, origin: %s) %s was read from chip %s whose attestation key is "
           "certified by %s; signature valid; freshness matched\n",
           c->a.id, pf->type.name, origin_words(pf->at.origin), value, uid, anchor);
}

static int se_attest(se_ctx *c)
{
    proof *pf = calloc(1, sizeof *pf);
    int st;

    if (!pf)
        return fail(c, "out of memory");
    if (!(c->a.seen & OPT_ATTEST_KEY))
        c->a.attest_key = EA_OBJ_ATTEST_KEY;
    if (!(c->a.seen & OPT_ATTEST_CERT))
        c->a.attest_cert = EA_OBJ_ATTEST_CERT;
    /* Each step prints its own reason; the first failure ends the proof. */
    if ((st = load_anchors(c, pf)) == 0 && (st = attested_read(c, pf)) == 0 &&
        (st = read_attest_cert(c, pf)) == 0 && (st = check_chain(c, pf)) == 0 &&
        (st = check_signature(c, pf)) == 0 && (st = check_uid_and_attrs(c, pf)) == 0)
        attest_print(c, pf);
    X509_free(pf->cert);
    sk_X509_pop_free(pf->anchors, X509_free);
    free(pf);
    return st;
}

/* ---- entry ------------------------------------------------------------------- */

static int open_se(se_ctx *c)
{
    ea_host_opts o = { .timeout_ms = 10000 };
    char err[512] = "", ub[1100];
    const char *why = err, *uri;
    size_t ul;
    ea_err rc = ea_host_open(c->uri, &o, &c->h, err, sizeof err);

    if (rc == EA_OK)
        return 0;
    uri = uri_shown(c, ub, sizeof ub);
    ul = strlen(uri);
    /* The library's reason often starts with the URI; say it once. */
    if (!strncmp(why, uri, ul) && !strncmp(why + ul, ": ", 2))
        why += ul + 2;
    /* ...and the socket layer may repeat the address without the scheme. */
    const char *addr = strstr(uri, "://") ? strstr(uri, "://") + 3 : strchr(uri, ':') ? strchr(uri, ':') + 1 : uri;
    size_t al = strlen(addr);
    if (al && !strncmp(why, addr, al) && !strncmp(why + al, ": ", 2))
        why += al + 2;
    return fail(c, "cannot reach the secure element at %s: %s", uri, *why ? why : ea_err_str(rc));
}

int cmd_se(const cli_global *g, int argc, char **argv)
{
    se_ctx c = { .uri = g->se_uri };
    char prog[48];
    int st;

    if (argc < 2) {
        se_usage(stderr);
        return EXIT_USAGE;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        se_usage(stdout);
        return 0;
    }
    if (!(c.cmd = find_cmd(argv[1]))) {
        fprintf(stderr, "edgeauth se: unknown command '%s'\n", argv[1]);
        se_usage(stderr);
        return EXIT_USAGE;
    }
    /* getopt_long's own complaints then start with "edgeauth se CMD:". */
    snprintf(prog, sizeof prog, "edgeauth se %s", c.cmd->name);
    argv[1] = prog;
    if ((st = parse_args(&c, argc - 1, argv + 1)) != 0)
        return st < 0 ? 0 : st;
    if ((st = open_se(&c)) != 0)
        return st;
    st = c.cmd->fn(&c);
    ea_host_close(c.h);
    return st;
}
