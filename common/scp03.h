/* Internal: GlobalPlatform SCP03 session core as the SE05x uses it
 * (spec se05x-apdu.md §7): session-key derivation, cryptograms, EXTERNAL
 * AUTHENTICATE, command wrapping (C-DEC + C-MAC) and response wrapping
 * (R-ENC + R-MAC), for both the card side (emu) and the host side.
 *
 * All crypto is OpenSSL 3 (EVP_MAC "CMAC" over AES-128-CBC, EVP_CIPHER
 * AES-128-ECB/CBC) fetched from the caller's OSSL_LIB_CTX (NULL = default).
 *
 * Sequence, host:  derive -> check_card_cryptogram -> ext_auth_cmd ->
 *                  { wrap_command -> unwrap_response }*
 * Sequence, card:  derive -> (send card_cryptogram) -> ext_auth_verify ->
 *                  { unwrap_command -> wrap_response }*
 *
 * Every function that fails leaves the session (MCV, counter) unchanged, so
 * a refused frame cannot desynchronise either side; GP says the card should
 * then close the session, which is the caller's decision (ea_scp03_wipe).
 *
 * Buffers follow STYLE §2.4: on entry *out_len is the capacity of out; on
 * EA_OK the number of bytes written; on EA_ERR_BUF_TOO_SMALL the size needed
 * (out untouched); on any other error *out_len is 0 and out is wiped. */
#ifndef EA_COMMON_SCP03_H
#define EA_COMMON_SCP03_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/types.h>

#include "edgeauth/err.h"

#define EA_SCP03_KEY_LEN 16
#define EA_SCP03_BLOCK 16
#define EA_SCP03_CHALLENGE_LEN 8
#define EA_SCP03_CRYPTOGRAM_LEN 8
#define EA_SCP03_MAC_LEN 8       /* truncated C-MAC / R-MAC on the wire */
#define EA_SCP03_KEY_VERSION 0x0B /* INITIALIZE UPDATE P1 used by nano / Plug&Trust */
#define EA_SCP03_SECLVL 0x33      /* C-MAC | C-DEC | R-MAC | R-ENC */
#define EA_SCP03_EXT_AUTH_LEN 21  /* 84 82 33 00 10 <cryptogram 8> <MAC 8> */
#define EA_SCP03_INIT_UPDATE_LEN 13
/* Applets at or above this version increment the counter after every
 * command; below it only after commands with data (§7.5). */
#define EA_SCP03_ALWAYS_INC_VERSION 0x04030000u

typedef struct ea_scp03_accel ea_scp03_accel;

typedef struct ea_scp03_session {
    OSSL_LIB_CTX *libctx; /* not owned; may be NULL */
    ea_scp03_accel *accel; /* owned: keyed OpenSSL contexts (ea_scp03_accelerate) */
    uint8_t s_enc[EA_SCP03_KEY_LEN];
    uint8_t s_mac[EA_SCP03_KEY_LEN];
    uint8_t s_rmac[EA_SCP03_KEY_LEN];
    uint8_t card_cryptogram[EA_SCP03_CRYPTOGRAM_LEN];
    uint8_t host_cryptogram[EA_SCP03_CRYPTOGRAM_LEN];
    uint8_t mcv[EA_SCP03_BLOCK];         /* MAC chaining value */
    uint8_t counter[EA_SCP03_BLOCK];     /* encryption counter of the next command */
    uint8_t rsp_counter[EA_SCP03_BLOCK]; /* counter block for the pending response's ICV */
    uint32_t applet_version;             /* first 4 SELECT bytes, e.g. 0x07020000 */
    bool always_increment;               /* applet_version >= EA_SCP03_ALWAYS_INC_VERSION */
    bool authenticated;                  /* EXTERNAL AUTHENTICATE done */
    bool rsp_pending;                    /* a command was wrapped/unwrapped, its response not yet */
} ea_scp03_session;

/* Parsed INITIALIZE UPDATE response (§7.3). */
typedef struct ea_scp03_iu_rsp {
    uint8_t key_div[10];
    uint8_t key_info[3];
    uint8_t card_challenge[EA_SCP03_CHALLENGE_LEN];
    uint8_t card_cryptogram[EA_SCP03_CRYPTOGRAM_LEN];
    bool has_seq;
    uint8_t seq[3]; /* pseudo-random mode only */
} ea_scp03_iu_rsp;

/* INITIALIZE UPDATE command: 80 50 <key_version> 00 08 <host challenge>.
 * out must hold EA_SCP03_INIT_UPDATE_LEN bytes. */
ea_err ea_scp03_init_update_cmd(uint8_t key_version, const uint8_t host_challenge[8],
                                uint8_t *out, size_t *out_len);

/* Parse the INITIALIZE UPDATE response including its SW (29 or 32 bytes +
 * 90 00). Wrong length: EA_ERR_MALFORMED; SW other than 9000: EA_ERR_CARD. */
ea_err ea_scp03_parse_init_update_rsp(const uint8_t *rsp, size_t len, ea_scp03_iu_rsp *out);

/* Derive S-ENC, S-MAC, S-RMAC and both cryptograms (§7.3, SP 800-108 counter
 * mode, AES-CMAC, one iteration) and reset the session: not authenticated,
 * MCV zero, counter zero. applet_version selects the counter rule (§7.5).
 * On failure *out is wiped. */
ea_err ea_scp03_derive(OSSL_LIB_CTX *libctx, const uint8_t enc[16], const uint8_t mac[16],
                       const uint8_t host_challenge[8], const uint8_t card_challenge[8],
                       uint32_t applet_version, ea_scp03_session *out);

/* Key the session's CMAC and AES contexts once, instead of per operation:
 * every later wrap/unwrap reuses them (about 3x less work per command).
 * Optional: without it every operation builds its own. A session with
 * contexts owns them (ea_scp03_wipe frees them) and must not be copied by
 * value. EA_ERR_CRYPTO if OpenSSL cannot make them (the session still works
 * without). */
ea_err ea_scp03_accelerate(ea_scp03_session *s);

/* Constant-time checks of a received cryptogram: EA_OK or EA_ERR_AUTH. */
ea_err ea_scp03_check_card_cryptogram(const ea_scp03_session *s, const uint8_t cryptogram[8]);
ea_err ea_scp03_check_host_cryptogram(const ea_scp03_session *s, const uint8_t cryptogram[8]);

/* Host: build EXTERNAL AUTHENTICATE (security level 33) into out (capacity
 * *out_len >= 21). On EA_OK the session is authenticated: MCV = full C-MAC,
 * counter = 00..01. Only once per derive: on an authenticated session
 * EA_ERR_CONDITIONS. */
ea_err ea_scp03_ext_auth_cmd(ea_scp03_session *s, uint8_t *out, size_t *out_len);

/* Card: verify EXTERNAL AUTHENTICATE. Wrong shape (length, header, security
 * level other than 33): EA_ERR_MALFORMED; cryptogram or MAC mismatch:
 * EA_ERR_AUTH. On EA_OK the session is authenticated as above. A session
 * already authenticated refuses it (EA_ERR_CONDITIONS): a replayed EXTERNAL
 * AUTHENTICATE must not rewind MCV and counter; re-authenticating takes a new
 * ea_scp03_derive with a fresh card challenge (the card must use a random one,
 * spec §10 item 12). */
ea_err ea_scp03_ext_auth_verify(ea_scp03_session *s, const uint8_t *apdu, size_t len);

/* The ICV for a 16-byte counter block: AES-ECB(S-ENC, counter) for a
 * command, AES-ECB(S-ENC, 80 || counter[1..15]) for a response. */
ea_err ea_scp03_icv(const ea_scp03_session *s, const uint8_t counter[16], bool response,
                    uint8_t icv[16]);

/* Host: wrap a plain ISO 7816 APDU (case 1, 2, 3, 4; short or extended) per
 * §7.4. The wrapped Lc uses the extended form if the input did (Lc or Le) or
 * if Lc' >= 255. An input Le is kept after the MAC (not MACed), in the form of
 * the output. Unparseable input: EA_ERR_MALFORMED. */
ea_err ea_scp03_wrap_command(ea_scp03_session *s, const uint8_t *apdu, size_t len, uint8_t *out,
                             size_t *out_len);

/* Card: verify and unwrap a wrapped APDU. The C-MAC is checked in constant
 * time before anything is decrypted. Any failure (not authenticated: EA_ERR_CONDITIONS;
 * bad framing, truncation, MAC mismatch, bad padding: EA_ERR_AUTH) leaves the
 * session unchanged and returns no plaintext. On EA_OK out holds the plain
 * APDU (CLA without bit 04, same Lc/Le form as the wire); the capacity needed
 * is at most len. */
ea_err ea_scp03_unwrap_command(ea_scp03_session *s, const uint8_t *apdu, size_t len, uint8_t *out,
                               size_t *out_len);

/* Card: wrap the response to the last unwrapped command. in = plain data ||
 * SW1 SW2. SW 9000: [encData] || R-MAC(8) || 90 00; any other SW: the bare
 * SW (data dropped). Without a pending command: EA_ERR_CONDITIONS. */
ea_err ea_scp03_wrap_response(ea_scp03_session *s, const uint8_t *rsp, size_t len, uint8_t *out,
                              size_t *out_len);

/* Host: verify and unwrap the response to the last wrapped command. SW 9000:
 * R-MAC checked in constant time, then decrypted; out = plain data || 90 00.
 * Any other SW is passed through unverified as the bare SW (§7.6; any data
 * with it is dropped). Mismatch, bad framing or padding: EA_ERR_AUTH. The
 * capacity needed is at most len. */
ea_err ea_scp03_unwrap_response(ea_scp03_session *s, const uint8_t *rsp, size_t len, uint8_t *out,
                                size_t *out_len);

/* Wipe keys, cryptograms, MCV and counters, and free the session's keyed
 * contexts. NULL is a no-op. */
void ea_scp03_wipe(ea_scp03_session *s);

/* ---- static keys ------------------------------------------------------- */

/* The three static Platform SCP03 keys of a chip (key version 0x0B). */
typedef struct ea_scp03_keys {
    uint8_t enc[EA_SCP03_KEY_LEN];
    uint8_t mac[EA_SCP03_KEY_LEN];
    uint8_t dek[EA_SCP03_KEY_LEN];
} ea_scp03_keys;

/* Load keys from spec: "default:VARIANT" picks NXP's published default keys
 * of that variant (spec §7.2: SE050C1, SE050E, ... case-insensitive), any
 * other string is the path of a key file in the Plug&Trust format (lines
 * "ENC <32 hex>", "MAC <32 hex>", optional "DEK <32 hex>"; blank lines and
 * '#' comments allowed). A file readable or writable by group or others is
 * refused (EA_ERR_DENIED), like ssh does with private keys. err receives a
 * one-line reason; out is wiped on failure. */
ea_err ea_scp03_keys_load(const char *spec, ea_scp03_keys *out, char *err, size_t errlen);
/* The key file text for k (three lines). */
ea_err ea_scp03_keys_format(const ea_scp03_keys *k, char *out, size_t cap);
/* Space-separated names accepted after "default:". */
const char *ea_scp03_default_names(void);
void ea_scp03_keys_wipe(ea_scp03_keys *k);

#endif
