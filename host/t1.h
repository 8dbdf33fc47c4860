/* Internal: the host side of T=1 over I2C, UM11225 flavour (spec
 * se05x-apdu.md §6.1-6.3), over an abstract I2C link.
 *
 * The engine turns one C-APDU into I-blocks (chained in blocks of at most
 * IFSC bytes), collects the R-APDU (acknowledging a chained response block
 * by block), answers WTX requests and recovers from lost or damaged blocks.
 * It reads a block as nano does: poll a 2-byte read (NAD, PCB) every MPOT
 * until the SE stops NACKing, then read LEN, then LEN + 2 bytes.
 *
 * Error recovery (ISO 7816-3 style, limits of spec §6.1):
 * - a block with a bad CRC is answered R(N(R), EE = 01), a garbled one or
 *   silence for BWT (x the last WTX multiplier) by R(N(R), EE = 10); the SE
 *   then sends its last block again, or tells with R(N(R)) which of ours
 *   it is missing, and we send that again. At most EA_T1_RNACK_MAX such
 *   requests in a row, EA_T1_RETRY_MAX recoveries in one exchange;
 * - past those limits, or on a block that makes no sense (lost sync), the
 *   engine sends RESYNC (and an interface soft reset if RESYNC goes
 *   unanswered) and the exchange fails with EA_ERR_IO: the command may or
 *   may not have run on the SE, so it is never sent again automatically;
 * - EA_T1_WTX_MAX WTX requests in a row end the exchange the same way, with
 *   an interface soft reset, as nano does.
 * Every wait is bounded by the caller's deadline (CLOCK_MONOTONIC ms); when
 * it passes mid-exchange the call returns EA_ERR_TIMEOUT and the next call
 * starts with RESYNC.
 *
 * The engine is caller-allocated and not thread-safe (the session holds
 * its lock around each call). */
#ifndef EA_HOST_T1_H
#define EA_HOST_T1_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/t1.h"
#include "edgeauth/err.h"

#define EA_T1_RNACK_MAX 2u  /* R-NACKs in a row for one block (MAX_RNACK_RETRY_LIMIT) */
#define EA_T1_RETRY_MAX 10u /* recoveries per exchange (PH_PROTO_7816_FRAME_RETRY_COUNT) */
#define EA_T1_WTX_MAX 500u  /* WTX requests in a row (PH_PROTO_WTX_DEFAULT_COUNT) */
#define EA_T1_SREQ_TRIES 3u /* sends of one S-block request before giving up */
#define EA_T1_SUBREAD_TRIES 8u /* NACKed LEN / INF reads retried (nano MAX_RETRY_COUNT) */
#define EA_T1_ATR_MAX 64u
#define EA_T1_RAPDU_LIMIT 65538u /* longer chained responses are refused */

/* The I2C link. Each call is one transaction and must return by deadline_ms
 * (EA_ERR_TIMEOUT) or fail with EA_ERR_IO when the link itself is broken.
 * *nack = true (with EA_OK) means the SE NACKed its address: nothing was
 * written / nothing to read yet. A read fills exactly n bytes. */
typedef struct ea_t1_link {
    void *ctx;
    ea_err (*write)(void *ctx, const uint8_t *p, size_t n, bool *nack, long long deadline_ms);
    ea_err (*read)(void *ctx, uint8_t *p, size_t n, bool *nack, long long deadline_ms);
} ea_t1_link;

/* Timing overrides. 0 takes the value from the ATR (BWT 1000 ms, MPOT 1 ms,
 * SEGT 100 us on an SE05x); a negative value means none (no sleep: the
 * fuzzer and tests with a synchronous card use that). */
typedef struct ea_t1_opts {
    int bwt_ms;
    int mpot_ms;
    int segt_us;
} ea_t1_opts;

typedef struct ea_t1_stats {
    unsigned long frames_tx, frames_rx;
    unsigned long read_nacks, write_nacks;
    unsigned long rnacks_tx;  /* R-blocks with EE != 0 we sent */
    unsigned long resends;    /* blocks we sent again */
    unsigned long wtx;        /* WTX requests answered */
    unsigned long timeouts;   /* BWT expiries */
    unsigned long resyncs;    /* RESYNC exchanges (open included) */
    unsigned long soft_resets;
} ea_t1_stats;

typedef struct ea_t1_eng {
    /* private: use the functions below */
    ea_t1_link link;
    ea_t1_opts opts;
    unsigned bwt_ms, mpot_ms, segt_us, ifsc;
    uint8_t atr[EA_T1_ATR_MAX];
    size_t atr_len;
    bool open;        /* RESYNC done, sequence numbers in step */
    bool need_resync; /* an exchange was cut short */
    uint8_t ns;       /* N(S) of our next I-block */
    uint8_t nr;       /* N(S) the SE's next I-block carries */
    long long last_tx_us;
    uint8_t last[EA_T1_FRAME_MAX]; /* last block sent, for R-NACK */
    size_t last_len;
    uint8_t last_i[EA_T1_FRAME_MAX]; /* last I-block sent */
    size_t last_i_len;
    uint8_t rx[EA_T1_FRAME_MAX]; /* block being received */
    ea_t1_stats st;
} ea_t1_eng;

/* Set up (no I/O). link is copied; opts may be NULL. */
void ea_t1_init(ea_t1_eng *e, const ea_t1_link *link, const ea_t1_opts *opts);

/* Open the link as nano does: RESYNC, then GET ATR; the ATR's BWT, IFSC,
 * MPOT and SEGT are used from then on (defaults when it does not parse).
 * err receives a one-line reason on failure. */
ea_err ea_t1_open(ea_t1_eng *e, long long deadline_ms, char *err, size_t errlen);

/* Exchange one APDU. On entry *rlen is the capacity of rapdu; on EA_OK the
 * R-APDU length (SW included). A response longer than the capacity is still
 * read to its end (the link stays in step), then EA_ERR_BUF_TOO_SMALL with
 * *rlen = the size needed. EA_ERR_IO: link failure or lost sync (see
 * above); EA_ERR_TIMEOUT: deadline passed. */
ea_err ea_t1_transceive(ea_t1_eng *e, const uint8_t *capdu, size_t clen, uint8_t *rapdu,
                        size_t *rlen, long long deadline_ms, char *err, size_t errlen);

/* S-block exchanges. resync: sequence numbers back to 0. get_atr /
 * soft_reset: the ATR into atr (capacity *atr_len in, length out; atr may
 * be NULL) and the timing taken from it; soft reset also resets the SE's
 * interface (the applet is deselected). end_session: End of APDU session,
 * sent on close. chip_reset: the SE restarts. */
ea_err ea_t1_resync(ea_t1_eng *e, long long deadline_ms, char *err, size_t errlen);
ea_err ea_t1_get_atr(ea_t1_eng *e, uint8_t *atr, size_t *atr_len, long long deadline_ms,
                     char *err, size_t errlen);
ea_err ea_t1_soft_reset(ea_t1_eng *e, uint8_t *atr, size_t *atr_len, long long deadline_ms,
                        char *err, size_t errlen);
ea_err ea_t1_end_session(ea_t1_eng *e, long long deadline_ms, char *err, size_t errlen);
ea_err ea_t1_chip_reset(ea_t1_eng *e, long long deadline_ms, char *err, size_t errlen);

/* The ATR of the last GET ATR / soft reset (length 0 before open). */
const uint8_t *ea_t1_atr(const ea_t1_eng *e, size_t *len);
/* Counters since ea_t1_init. */
const ea_t1_stats *ea_t1_get_stats(const ea_t1_eng *e);
/* Wipe the engine's buffers (they held APDU bytes). */
void ea_t1_wipe(ea_t1_eng *e);

/* CLOCK_MONOTONIC in ms, the clock of every deadline here. */
long long ea_t1_now_ms(void);

#endif
