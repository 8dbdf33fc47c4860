/* Internal: the socket server of edgeauth-se (card side of JRCP_v1 and of
 * T=1 over I2C over TCP).
 *
 * One server listens on one or more URIs and serves every connected client
 * from one thread with a poll() loop. Each client gets its own chip channel
 * (ea_emu_chan), opened on accept and closed on disconnect, so applet
 * selection, transient objects and sessions never leak between clients.
 * APDUs run one at a time, in the order their messages complete. Sockets are
 * non-blocking and each client has bounded buffers, so a client that sends
 * half a message and stalls delays nobody.
 *
 * Listen URIs:
 *   tcp://HOST[:PORT]   JRCP_v1 over TCP. PORT defaults to 8050; 0 picks a free
 *                       port (ea_serve_uri() tells which). HOST is a name, an
 *                       IPv4 address or [IPv6]. Only loopback addresses are
 *                       accepted unless opts->allow_remote: JRCP_v1 carries no
 *                       authentication, anyone who reaches the port drives
 *                       the chip.
 *   unix:PATH           JRCP_v1 over a unix stream socket (unix://PATH too).
 *                       A stale socket file at PATH (nobody accepting) is
 *                       replaced; a live one, or a file that is not a socket,
 *                       is refused. The socket is created mode 0600 and
 *                       removed when the server is freed.
 *   t1-tcp://HOST[:PORT][?OPTS]
 *                       T=1 over I2C (UM11225, spec §6.1) with the I2C
 *                       transactions carried over TCP (wire format in
 *                       common/t1.h): each connection is one bus with one SE,
 *                       i.e. one channel behind the card side of T=1
 *                       (emu/t1_card.h). Same host and port rules as tcp://.
 *                       OPTS (test hooks): wtx=N (N WTX requests before each
 *                       response), busy_ms=N (reads NACK for N ms after each
 *                       command), wtx_mult=N (multiplier in those requests),
 *                       joined with '&'. ea_serve_uri() reports the URI
 *                       without them.
 * The framing is chosen per listener from a table keyed by URI scheme.
 *
 * JRCP_v1 (spec se05x-apdu.md §6.4): every message is MTY NAD LNH LNL
 * payload, NAD = 00, length big-endian. Server answers:
 *   00 WAIT_FOR_CARD      resets the client's channel, answers 00 00 <len> ATR
 *   01 APDU_DATA          answers 01 00 <len> R-APDU. A C-APDU longer than
 *                         EA_EMU_APDU_MAX is read, discarded and answered 67 00.
 *   03 ERROR_MSG (close)  answers 03 00 00 00, then closes the connection
 *   04 TERMINAL_INFO      answers 04 00 00 00
 *   07 DEBUG_INFORMATION  answers 07 00 00 00
 *   30 LOCK / 31 UNLOCK   echo the header (one chip, APDUs already serialised)
 *   other MTY             ERROR_MSG (03) with a short text; the connection
 *                         stays open (the length field still frames the
 *                         message, so the stream is not lost).
 *   NAD other than 00     ERROR_MSG, then the connection is closed: the peer
 *                         does not speak JRCP_v1 and its length field cannot
 *                         be trusted to find the next message.
 * Payloads of messages other than APDU_DATA are read and ignored.
 *
 * Limits: at most opts->max_clients clients (further ones get an ERROR_MSG
 * and are closed); a client whose message stays incomplete for
 * opts->stall_ms is closed. Nothing is logged unless opts->verbose, and then
 * only connection events and counters on stderr, never APDU bytes (they can
 * carry key material); buffers are wiped after each exchange. */
#ifndef EA_EMU_SERVER_H
#define EA_EMU_SERVER_H

#include <signal.h>
#include <stddef.h>

#include "edgeauth/emu.h"
#include "edgeauth/err.h"

#define EA_SERVE_DEFAULT_PORT 8050u
#define EA_SERVE_DEFAULT_URI "tcp://127.0.0.1:8050"
#define EA_SERVE_MAX_LISTEN 16u       /* listen URIs per server */
#define EA_SERVE_DEFAULT_CLIENTS 64u  /* opts->max_clients = 0 */
#define EA_SERVE_DEFAULT_STALL_MS 30000u

typedef struct ea_serve_opts {
    const char *const *listen;     /* n_listen URIs; n_listen = 0: EA_SERVE_DEFAULT_URI */
    size_t n_listen;
    int allow_remote;              /* accept non-loopback tcp:// addresses */
    int verbose;                   /* connection log on stderr */
    volatile sig_atomic_t *stop;   /* optional: the loop ends once *stop != 0
                                    * (checked at least every 200 ms) */
    void (*ready)(void *ctx);      /* ea_emu_serve only: called once listening */
    void *ready_ctx;
    unsigned max_clients;          /* 0 = EA_SERVE_DEFAULT_CLIENTS */
    unsigned stall_ms;             /* 0 = EA_SERVE_DEFAULT_STALL_MS */
} ea_serve_opts;

typedef struct ea_serve ea_serve;

/* Bind and listen on every URI of opts. The server keeps the emu pointer
 * (which must outlive it) and copies everything else it needs from opts,
 * including opts->stop (the pointer, not the value). On failure nothing stays bound and errbuf receives a one-line
 * reason naming the URI (EA_ERR_ARG: bad URI or refused address; EA_ERR_IO:
 * socket error, e.g. port in use; EA_ERR_EXISTS: a live server or a
 * non-socket file at a unix: path). */
ea_err ea_serve_new(ea_emu *emu, const ea_serve_opts *opts, ea_serve **out, char *errbuf,
                    size_t errlen);

/* Number of listeners (a tcp:// name with several addresses binds each),
 * and the i-th as a URI with the actual port (useful with port 0). NULL if
 * i is out of range. The string lives as long as the server. */
size_t ea_serve_count(const ea_serve *s);
const char *ea_serve_uri(const ea_serve *s, size_t i);

/* Serve until ea_serve_stop() or *opts->stop. Returns EA_OK on a requested
 * stop, EA_ERR_IO if poll() itself fails. Clients stay connected on return
 * (ea_serve_free closes them), so run may be called again. */
ea_err ea_serve_run(ea_serve *s);

/* Ask a running (or the next) ea_serve_run to return. Async-signal-safe and
 * thread-safe: it writes one byte to the server's self-pipe, so a signal
 * handler may call it. */
void ea_serve_stop(ea_serve *s);

/* Close every client (and its channel), every listener, remove the unix
 * socket files this server created. Does not close emu. NULL is a no-op. */
void ea_serve_free(ea_serve *s);

/* All in one: ea_serve_new, opts->ready(opts->ready_ctx), ea_serve_run,
 * ea_serve_free. Stops only through opts->stop (set it from a signal
 * handler or another thread). */
ea_err ea_emu_serve(ea_emu *emu, const ea_serve_opts *opts, char *errbuf, size_t errlen);

#endif
