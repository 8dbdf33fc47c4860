/* Internal: the card side of T=1 over I2C (UM11225 flavour, spec
 * se05x-apdu.md §6.1) in front of one emulator channel.
 *
 * The card is driven by I2C transactions, as the SE05x is on a bus:
 * ea_t1_card_write() is one write transaction from the host (a T=1 block),
 * ea_t1_card_read() one read transaction. The card answers every block it
 * takes with exactly one block, which the host then reads, in one piece or
 * in several reads (nano reads NAD+PCB, then LEN, then INF+CRC). A read
 * NACKs when the card has nothing to send or is still busy; a write NACKs
 * while the card is busy, when it is empty, or when it is longer than a
 * block can be.
 *
 * Protocol behaviour:
 * - I-blocks carry N(S) alternating 0/1 from RESYNC on, both ways. Chained
 *   commands (M = 1) are acknowledged with R(N(R)); chained responses go
 *   out in blocks of at most IFSD (254, or what S(IFS) set) and continue on
 *   each R(N(R) = next).
 * - A block with a bad CRC gets R(N(R) = expected, EE = 01); any other
 *   malformed or unexpected block gets EE = 10. An I-block whose N(S) was
 *   already taken (the host missed our answer) gets our last block again.
 *   An R-block gets our last I-block again when its N(R) names that block,
 *   the next block when it acknowledges one of a chain, our last block when
 *   we are in the middle of receiving a chain or waiting for a WTX
 *   response, and otherwise R(N(R) = the N(S) we expect), so a host whose
 *   block was lost learns which block to send again.
 * - S-block requests: RESYNC (sequence numbers to 0, chains dropped),
 *   IFS, ABORT, End of APDU session (protocol context reset), chip reset
 *   and deep power down (also reset the channel: deselect, transient values
 *   gone), GET ATR (ATR, nothing reset), interface soft reset (protocol and
 *   channel reset, ATR).
 * - WTX: with opts->wtx_count = n the card sends n S(WTX) requests before
 *   each response, each at once (after the command, then after each S(WTX
 *   response)), as a busy SE asks for time (test hook to force the path).
 *   With opts->busy_ms the response becomes readable only busy_ms after the
 *   command arrived (the time the SE "computes"); while a block is pending
 *   but not yet readable, reads and writes NACK.
 *
 * Time is passed in (CLOCK_MONOTONIC ms) so tests and the fuzzer control it.
 * The card borrows the channel; the caller closes it after ea_t1_card_free.
 * Not thread-safe: one card per connection, driven from one thread. */
#ifndef EA_EMU_T1_CARD_H
#define EA_EMU_T1_CARD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "edgeauth/emu.h"
#include "edgeauth/err.h"

typedef struct ea_t1_card ea_t1_card;

typedef struct ea_t1_card_opts {
    unsigned wtx_count; /* S(WTX) requests before each response (0 = none) */
    unsigned busy_ms;   /* simulated processing time of each command */
    uint8_t wtx_mult;   /* BWT multiplier in the WTX requests; 0 = 1 */
} ea_t1_card_opts;

typedef struct ea_t1_card_stats {
    unsigned long apdus;       /* commands executed */
    unsigned long frames_in;   /* host writes taken */
    unsigned long frames_out;  /* blocks queued for the host (resends included) */
    unsigned long rnacks_out;  /* R-blocks with EE != 0 sent */
    unsigned long resends;     /* blocks sent again */
    unsigned long wtx_out;     /* WTX requests sent */
    unsigned long read_nacks;  /* reads NACKed */
    unsigned long write_nacks; /* writes NACKed */
    unsigned long resyncs;     /* RESYNC requests taken */
} ea_t1_card_stats;

/* New card on channel ch (borrowed). opts may be NULL. */
ea_err ea_t1_card_new(ea_emu_chan *ch, const ea_t1_card_opts *opts, ea_t1_card **out);
/* Wipes and frees. NULL is a no-op. */
void ea_t1_card_free(ea_t1_card *c);

/* One I2C write transaction of n bytes. Returns true (ACK) when the card
 * took the bytes, false (NACK) when it did not; a taken block is always
 * answered, by a block the next reads return. */
bool ea_t1_card_write(ea_t1_card *c, const uint8_t *p, size_t n, uint64_t now_ms);

/* One I2C read transaction of n bytes (n >= 1). true: out holds n bytes,
 * the next n of the pending block, then FF filler past its end. false:
 * NACK, nothing pending or busy; out untouched. */
bool ea_t1_card_read(ea_t1_card *c, uint8_t *out, size_t n, uint64_t now_ms);

/* Counters since ea_t1_card_new. */
void ea_t1_card_get_stats(const ea_t1_card *c, ea_t1_card_stats *st);

#endif
