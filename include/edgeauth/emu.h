/* edgeauth — the software secure element (SE05x IoT applet 7.2).
 *
 * A chip is a state directory (sealed object store, see docs/EMULATOR.md).
 * A process opens a chip with ea_emu_open() and talks to it through one or
 * more channels: each channel is one logical link (a JRCP_v1 client, a T=1
 * link, the in-process transport) with its own applet selection, transient
 * objects and session state. APDUs on one chip run one at a time (the chip
 * holds a lock around each), so channels may be used from several threads.
 *
 * The APDU path allocates nothing per command and never crashes on bad
 * input: every malformed or refused command gets an ISO 7816 status word. */
#ifndef EDGEAUTH_EMU_H
#define EDGEAUTH_EMU_H

#include <stddef.h>
#include <stdint.h>

#include "edgeauth/err.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ea_emu ea_emu;
typedef struct ea_emu_chan ea_emu_chan;

/* Largest C-APDU / R-APDU the chip handles (bytes, header and SW included). */
#define EA_EMU_APDU_MAX 4096u

/* Options of ea_emu_init(). */
typedef struct ea_emu_init_opts {
    const char *vendor_ca_dir; /* SE vendor CA; NULL = DIR/vendor (created on first use) */
    const char *seal_key_path; /* where to write the sealing secret; NULL = DIR/seal.key */
    int preprovision;          /* also create device key 0xF0000100 + cert 0xF0000101 */
    int force;                 /* wipe an existing chip in DIR first */
    /* Platform SCP03 static keys (ENC, MAC, DEK; key version 0x0B). NULL:
     * fresh random keys, sealed in the chip; "default:VARIANT": NXP's
     * published default keys of that variant (e.g. "default:SE050C1"), for
     * compatibility tests only; otherwise a key file (see scp03_keys_out). */
    const char *scp03_keys;
    /* Export the keys once, here, at creation: a 0600 file in the
     * Plug&Trust format ("ENC <hex>", "MAC <hex>", "DEK <hex>"). The chip
     * never exports them again. NULL: not exported (SCP03 then works only
     * with keys given through scp03_keys). */
    const char *scp03_keys_out;
} ea_emu_init_opts;

/* Create a new chip in dir: unique id 0x7FFF0206, attestation key
 * 0xF0000012 and its certificate 0xF0000013 from the vendor CA. Refuses an
 * existing chip (EA_ERR_EXISTS) unless opts->force. errbuf receives a
 * one-line reason on failure. */
ea_err ea_emu_init(const char *dir, const ea_emu_init_opts *opts, char *errbuf, size_t errlen);

/* Options of ea_emu_open(). */
typedef struct ea_emu_opts {
    const char *seal_key_path; /* NULL = DIR/seal.key (EDGEAUTH_SE_SEAL_KEY overrides) */
    const char *holder;        /* name written into the lock file, e.g. "edgeauth-se serve" */
    uint32_t applet_version;   /* 0 = 0x07020000 (7.2.0); 0x03010000 selects 3.1.0 behaviour */
    int allow_factory_reset;   /* accept DeleteAll without a FACTORY_RESET session (not
                                * emulated); off: DeleteAll answers 6982 */
    /* Timing model: "se050" delays every command by what NXP measured on an
     * SE050C1 over T=1/I2C (the Platform SCP03 figure when the command came
     * wrapped; see docs/EMULATOR.md for the table), "none" or NULL runs at
     * full speed. NULL: EDGEAUTH_SE_TIMING. */
    const char *timing;
    /* Append one line per command to this file: time, channel, header,
     * command name, plain/scp03, lengths, status word, duration. Never any
     * data. NULL: EDGEAUTH_SE_APDU_LOG, else no log. */
    const char *apdu_log;
} ea_emu_opts;

/* Open (and lock) a chip. opts may be NULL. errbuf receives a one-line reason
 * on failure, e.g. who holds the lock. Within one process, opening the same
 * directory again returns the same chip (reference counted; opts of the
 * later opens are ignored): each user then works on its own channels.
 * Another process gets EA_ERR_LOCKED naming the holder. */
ea_err ea_emu_open(const char *dir, const ea_emu_opts *opts, ea_emu **out, char *errbuf,
                   size_t errlen);
/* Close the chip and every channel still open on it. NULL is a no-op. */
void ea_emu_close(ea_emu *emu);

/* Open a channel: no applet selected, no transient objects. */
ea_err ea_emu_chan_open(ea_emu *emu, ea_emu_chan **out);
/* Close a channel: its transient objects and sessions are gone. */
void ea_emu_chan_close(ea_emu_chan *ch);
/* Cold reset of the link: deselects the applet and clears transient values,
 * as a power cycle or an interface reset would. */
void ea_emu_chan_reset(ea_emu_chan *ch);

/* Exchange one APDU. capdu/clen is the raw C-APDU; on entry *rlen is the
 * capacity of rapdu (at least EA_EMU_APDU_MAX is always enough), on return
 * the length of the R-APDU (data + SW1 SW2). Returns EA_OK whenever an
 * R-APDU was produced, whatever its status word. */
ea_err ea_emu_transceive(ea_emu_chan *ch, const uint8_t *capdu, size_t clen, uint8_t *rapdu,
                         size_t *rlen);

/* The 35-byte ATR the chip answers on a link reset (T=1 / JRCP_v1). */
ea_err ea_emu_atr(uint8_t *out, size_t *out_len);

/* Test hook: the next random the TLS PRF uses as "the SE's random" on this
 * channel (normally drawn by TLSGenerateRandom). Used by the known-answer
 * tests only. */
ea_err ea_emu_test_set_tls_random(ea_emu_chan *ch, const uint8_t random[32]);

/* Test hook: the card challenge of the next INITIALIZE UPDATE on this
 * channel (normally random). Used by the known-answer tests only. */
ea_err ea_emu_test_set_card_challenge(ea_emu_chan *ch, const uint8_t challenge[8]);

#ifdef __cplusplus
}
#endif
#endif
