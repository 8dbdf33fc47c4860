/* libFuzzer target: the Platform SCP03 frame parsers (common/scp03.c), both
 * sides. The first input byte picks what the rest is:
 *   0  a wrapped C-APDU for the card (ea_scp03_unwrap_command)
 *   1  an R-APDU for the host (ea_scp03_unwrap_response, after a command)
 *   2  an INITIALIZE UPDATE answer (ea_scp03_parse_init_update_rsp)
 *   3  a plain C-APDU: wrapped by the host, it must unwrap on the card to
 *      exactly the same bytes (a round-trip property; abort() otherwise)
 *   4  an EXTERNAL AUTHENTICATE for the card (ea_scp03_ext_auth_verify)
 * Sessions come from nano's dummy keys and the spec's challenges, so a
 * well-formed frame from the seed corpus gets past the MAC and reaches the
 * decryption and padding code. A refused frame must leave the session as it
 * was. Crashes, sanitizer reports and leaks fail. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/scp03.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const uint8_t enc[16] = { 0xAB, 0xCD, 0xAB, 0xCD, 0xAB, 0xCD, 0xAB, 0xCD,
                                 0xAB, 0xCD, 0xAB, 0xCD, 0xAB, 0xCD, 0x00, 0x01 };
static const uint8_t mac[16] = { 0xAB, 0xCD, 0xAB, 0xCD, 0xAB, 0xCD, 0xAB, 0xCD,
                                 0xAB, 0xCD, 0xAB, 0xCD, 0xAB, 0xCD, 0x00, 0x02 };
static const uint8_t hc[8] = { 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88 };
static const uint8_t cc[8] = { 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08 };

/* Host and card sessions, authenticated, in step (the spec's vector). */
static int pair(ea_scp03_session *host, ea_scp03_session *card)
{
    uint8_t ea[EA_SCP03_EXT_AUTH_LEN];
    size_t el = sizeof ea;
    if (ea_scp03_derive(NULL, enc, mac, hc, cc, 0x07020000u, host) != EA_OK ||
        ea_scp03_derive(NULL, enc, mac, hc, cc, 0x07020000u, card) != EA_OK ||
        ea_scp03_ext_auth_cmd(host, ea, &el) != EA_OK || ea_scp03_ext_auth_verify(card, ea, el) != EA_OK)
        abort();
    return 0;
}

/* Where the data of a plain APDU starts, how long it is, whether an Le
 * follows (the ISO 7816 cases; false for anything else). */
static bool split(const uint8_t *a, size_t n, size_t *off, size_t *lc, bool *le)
{
    *off = 4;
    *lc = 0;
    *le = false;
    if (n == 4)
        return true;
    if (n == 5) {
        *le = true;
        return true;
    }
    if (a[4] != 0) {
        *off = 5;
        *lc = a[4];
        *le = n == 6 + *lc;
        return n == 5 + *lc || n == 6 + *lc;
    }
    if (n == 7) {
        *le = true;
        return true;
    }
    *off = 7;
    *lc = (size_t)a[5] << 8 | a[6];
    *le = n == 9 + *lc;
    return *lc > 0 && (n == 7 + *lc || n == 9 + *lc);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static uint8_t out[8192], out2[8192];
    ea_scp03_session host, card, saved;
    size_t ol = sizeof out;

    if (size < 1 || size > 4200)
        return 0;
    const uint8_t mode = data[0] % 5, *in = data + 1;
    size_t n = size - 1;
    pair(&host, &card);

    switch (mode) {
    case 0:
        saved = card;
        if (ea_scp03_unwrap_command(&card, in, n, out, &ol) == EA_OK) {
            if (ol > n)
                abort();
        } else if (memcmp(&saved, &card, sizeof card) != 0) {
            abort(); /* a refused frame moved the session */
        }
        break;
    case 1: {
        /* A command first, so a response is pending. */
        static const uint8_t cmd[] = { 0x80, 0x04, 0x00, 0x20, 0x00 };
        uint8_t w[64];
        size_t wl = sizeof w;
        if (ea_scp03_wrap_command(&host, cmd, sizeof cmd, w, &wl) != EA_OK)
            abort();
        saved = host;
        if (ea_scp03_unwrap_response(&host, in, n, out, &ol) == EA_OK) {
            if (ol > n || ol < 2)
                abort();
        } else if (memcmp(&saved, &host, sizeof host) != 0) {
            abort();
        }
        break;
    }
    case 2: {
        ea_scp03_iu_rsp iu;
        (void)ea_scp03_parse_init_update_rsp(in, n, &iu);
        break;
    }
    case 3: {
        uint8_t w[4400];
        size_t wl = sizeof w;
        if (ea_scp03_wrap_command(&host, in, n, w, &wl) != EA_OK)
            break; /* not an APDU the host can wrap */
        size_t ul = sizeof out2;
        if (ea_scp03_unwrap_command(&card, w, wl, out2, &ul) != EA_OK)
            abort(); /* what the host wrapped, the card must accept */
        /* The card sees the same command: header (CLA without bit 04),
         * data, and an Le if there was one. The length form may change
         * from short to extended when the wrapped data needs it. */
        size_t a_off, a_lc, b_off, b_lc;
        bool a_le, b_le;
        if (!split(in, n, &a_off, &a_lc, &a_le) || !split(out2, ul, &b_off, &b_lc, &b_le))
            abort();
        if ((out2[0] | 0x04u) != (in[0] | 0x04u) || memcmp(out2 + 1, in + 1, 3) != 0 || a_lc != b_lc ||
            a_le != b_le || memcmp(out2 + b_off, in + a_off, a_lc) != 0)
            abort();
        break;
    }
    case 4: {
        ea_scp03_session fresh;
        if (ea_scp03_derive(NULL, enc, mac, hc, cc, 0x07020000u, &fresh) != EA_OK)
            abort();
        (void)ea_scp03_ext_auth_verify(&fresh, in, n);
        ea_scp03_wipe(&fresh);
        break;
    }
    default:
        break;
    }
    ea_scp03_wipe(&host);
    ea_scp03_wipe(&card);
    return 0;
}
