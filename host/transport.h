/* Internal: the transports under an ea_host session.
 *
 * A transport moves whole APDUs: open() connects and resets the link (ATR),
 * xfer() exchanges one C-APDU for one R-APDU within timeout_ms, close()
 * disconnects (the session may open() again to reconnect), free() releases.
 * The session (host/host.c) serialises calls; transports need no lock. */
#ifndef EA_HOST_TRANSPORT_H
#define EA_HOST_TRANSPORT_H

#include <stddef.h>
#include <stdint.h>

#include "edgeauth/err.h"

#define EA_HOST_APDU_MAX 4096u

typedef struct ea_transport ea_transport;

typedef struct ea_transport_ops {
    const char *name; /* "emu", "jrcp-tcp", "jrcp-unix", "t1-tcp", "t1-i2c" */
    ea_err (*open)(ea_transport *t, char *err, size_t errlen);
    ea_err (*xfer)(ea_transport *t, const uint8_t *capdu, size_t clen, uint8_t *rapdu, size_t *rlen,
                   int timeout_ms, char *err, size_t errlen);
    void (*close)(ea_transport *t);
    void (*free)(ea_transport *t);
} ea_transport_ops;

struct ea_transport {
    const ea_transport_ops *ops;
};

/* Pick and create the transport for a URI (not yet opened). */
ea_err ea_transport_new(const char *uri, ea_transport **out, char *err, size_t errlen);

/* Constructors, one per transport family. */
ea_err ea_tr_emu_new(const char *dir, ea_transport **out, char *err, size_t errlen);
ea_err ea_tr_jrcp_new(const char *uri, ea_transport **out, char *err, size_t errlen);
/* t1-tcp://HOST:PORT (hostport = "HOST:PORT") */
ea_err ea_tr_t1_tcp_new(const char *hostport, ea_transport **out, char *err, size_t errlen);
/* i2c:/dev/i2c-N[@0xADDR] (spec = "/dev/i2c-N[@0xADDR]") */
ea_err ea_tr_t1_i2c_new(const char *spec, ea_transport **out, char *err, size_t errlen);

/* Socket helpers shared by the socket transports: connect to "HOST:PORT"
 * (TCP, TCP_NODELAY) or a Unix path, with a timeout; -1 and err on failure. */
int ea_sock_connect_tcp(const char *hostport, int timeout_ms, char *err, size_t errlen);
int ea_sock_connect_unix(const char *path, int timeout_ms, char *err, size_t errlen);
/* Write all / read exactly n bytes before the deadline (CLOCK_MONOTONIC ms). */
ea_err ea_sock_write_all(int fd, const void *p, size_t n, long long deadline_ms);
ea_err ea_sock_read_exact(int fd, void *p, size_t n, long long deadline_ms);
/* The same, but look for the data for up to 40 us before sleeping in
 * poll(): for request/answer links (JRCP_v1) where the answer follows
 * within microseconds and a sleep/wake-up pair would double the latency.
 * Not for T=1, whose card side runs in small steps on the same CPUs. */
ea_err ea_sock_read_exact_spin(int fd, void *p, size_t n, long long deadline_ms);
long long ea_now_ms(void);

#endif
