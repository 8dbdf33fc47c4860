/* The timing models: how long a real
 * part takes for each command, so that a handshake through the emulator
 * costs what it would on the board (spec se05x-apdu.md §9). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "emu/emu_int.h"

/* One row per command: the time NXP measured for it on an SE050C1 (applet
 * 3.1.1, FRDM-K64F host, T=1 over I2C; spec §9.1), without and with
 * Platform SCP03, in microseconds. 0 = not measured: the model then
 * charges the generic cost below. */
typedef struct cmd_row {
    uint8_t ins, p1, p2; /* ins: low 5 bits; 0xFF = any P1/P2 */
    uint32_t plain_us, scp_us;
} cmd_row;

#define ANY 0xFFu

static const cmd_row rows[] = {
    { EA_INS_CRYPTO, EA_P1_SIGNATURE, EA_P2_SIGN, 45000, 67000 },
    { EA_INS_CRYPTO, EA_P1_SIGNATURE, EA_P2_VERIFY, 44200, 68000 },
    { EA_INS_CRYPTO, EA_P1_EC, EA_P2_DH, 44000, 59000 },
    /* "generate client random" in NXP's deep TLS integration. */
    { EA_INS_CRYPTO, EA_P1_TLS, EA_P2_RANDOM, 22000, 0 },
    /* "calculate master secret" = PMS + PRF: 230 ms together; the split is
     * ours (the two steps cost about the same: one HMAC-heavy command
     * each). */
    { EA_INS_CRYPTO, EA_P1_TLS, EA_P2_TLS_PMS, 115000, 0 },
    { EA_INS_CRYPTO, EA_P1_TLS, EA_P2_TLS_PRF_CLI_HELLO, 115000, 0 },
    { EA_INS_CRYPTO, EA_P1_TLS, EA_P2_TLS_PRF_SRV_HELLO, 115000, 0 },
    { EA_INS_CRYPTO, EA_P1_TLS, EA_P2_TLS_PRF_CLI_RND, 115000, 0 },
    { EA_INS_CRYPTO, EA_P1_TLS, EA_P2_TLS_PRF_SRV_RND, 115000, 0 },
    { EA_INS_CRYPTO, EA_P1_TLS, EA_P2_TLS_PRF_BOTH, 115000, 0 },
};

/* Generating an EC key pair: mbedTLS ALT's "DH key generation" (54 ms,
 * including reading the public key back). */
#define KEYGEN_US 54000u
/* Commands nobody timed: a fixed cost of the applet and T=1 round trip
 * plus the I2C transfer at 400 kHz (9 bit times = 22.5 us per byte). An
 * estimate (spec §9.3 [?]), not a measurement. */
#define GENERIC_US 4000u
#define I2C_NS_PER_BYTE 22500u
/* Under SCP03 the measured commands cost 1.34-1.54x; unmeasured ones get
 * the mean. */
#define SCP_FACTOR_PERMILLE 1450u
/* Session open, SELECT included: 132 ms; +55 ms with the SCP03 handshake,
 * split between its two commands. */
#define SELECT_US 132000u
#define SCP_HANDSHAKE_HALF_US 27500u
/* GetRandom: ~20 ms fixed plus a small per-byte cost (spec §9.3 [?]). */
#define RANDOM_FIXED_US 20000u
#define RANDOM_NS_PER_BYTE 50000u

ea_err emu_timing_parse(const char *model, uint8_t *out)
{
    if (!model || !*model || !strcasecmp(model, "none")) {
        *out = EMU_TIMING_NONE;
        return EA_OK;
    }
    if (!strcasecmp(model, "se050")) {
        *out = EMU_TIMING_SE050;
        return EA_OK;
    }
    return EA_ERR_ARG;
}

uint32_t emu_timing_us(uint8_t model, uint8_t cla, uint8_t ins, uint8_t p1, uint8_t p2, size_t body_len,
                       size_t wire_bytes, bool secure)
{
    if (model != EMU_TIMING_SE050)
        return 0;
    uint64_t bytes_us = (uint64_t)wire_bytes * I2C_NS_PER_BYTE / 1000u;
    if (cla == 0x00 && ins == EA_INS_SELECT)
        return SELECT_US;
    if ((cla & ~EA_CLA_SCP_MASK) == 0x80 && (ins == 0x50 || ins == 0x82))
        return SCP_HANDSHAKE_HALF_US;
    uint8_t base = ins & 0x1F;
    uint64_t us = 0;
    bool measured = false;
    if (base == EA_INS_WRITE && (p1 & ~EA_P1_KEYPART_MASK) == EA_P1_EC) {
        /* Generating (id, curve, maybe a policy) vs. importing (a key). */
        us = body_len < 48 ? KEYGEN_US : GENERIC_US + bytes_us;
    } else if (base == EA_INS_MGMT && p1 == EA_P1_DEFAULT && p2 == EA_P2_RANDOM) {
        us = RANDOM_FIXED_US + (uint64_t)wire_bytes * RANDOM_NS_PER_BYTE / 1000u;
    } else {
        for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
            const cmd_row *r = &rows[i];
            if (r->ins == base && (r->p1 == ANY || r->p1 == p1) && (r->p2 == ANY || r->p2 == p2) &&
                r->plain_us) {
                us = secure && r->scp_us ? r->scp_us : r->plain_us;
                measured = secure && r->scp_us;
                break;
            }
        }
        if (!us)
            us = GENERIC_US + bytes_us;
    }
    if (secure && !measured)
        us = us * SCP_FACTOR_PERMILLE / 1000u;
    return us > UINT32_MAX ? UINT32_MAX : (uint32_t)us;
}

uint64_t emu_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void emu_sleep_until(uint64_t deadline_ns)
{
    for (;;) {
        uint64_t now = emu_now_ns();
        if (now >= deadline_ns)
            return;
        uint64_t d = deadline_ns - now;
        struct timespec ts = { (time_t)(d / 1000000000u), (long)(d % 1000000000u) };
        if (nanosleep(&ts, NULL) == 0)
            return;
        if (errno != EINTR)
            return;
    }
}

void emu_apdu_log(ea_emu *emu, const ea_emu_chan *ch, const apdu_ctx *c, bool secure, uint16_t sw,
                  size_t clen, size_t rlen, uint64_t took_ns)
{
    if (emu->apdu_log_fd < 0)
        return;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    char line[256];
    /* Headers, names, lengths and status words only: never data. */
    int n = snprintf(line, sizeof line,
                     "%lld.%06ld ch=%u %02X %02X %02X %02X %-28s %s lc=%zu rlen=%zu sw=%04X us=%llu\n",
                     (long long)ts.tv_sec, ts.tv_nsec / 1000, ch->serial, c->cla, c->ins, c->p1, c->p2,
                     ea_se05x_cmd_name(c->cla, c->ins, c->p1, c->p2), secure ? "scp03" : "plain", clen, rlen,
                     sw, (unsigned long long)(took_ns / 1000u));
    if (n > 0) {
        ssize_t w = write(emu->apdu_log_fd, line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
        (void)w; /* a full disk must not stop the chip */
    }
}
