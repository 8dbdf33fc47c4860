/* The socket server of edgeauth-se: listeners, a poll() loop, per-client
 * buffers, and the JRCP_v1 framing (spec se05x-apdu.md §6.4).
 *
 * IMPLEMENTATION NOTES
 * - One thread. Every socket is non-blocking; a client is only ever read
 *   exactly as many bytes as its current message still needs, so a second
 *   pipelined message stays in the kernel until the first is answered, and
 *   each client holds at most one message in memory.
 * - Fairness: at most one complete message per client per poll round.
 * - A client is not read while its answer is unsent (back-pressure), and is
 *   dropped when a message or an answer stays pending for stall_ms.
 * - Framings sit behind a small vtable (struct framing) chosen per listener
 *   from the scheme table, so T=1-over-TCP can be added next to JRCP_v1. */
#include "emu/server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sched.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "common/t1.h"
#include "common/util.h"
#include "emu/t1_card.h"

#define MAX_LISTENERS (2u * EA_SERVE_MAX_LISTEN) /* a name may give IPv4 + IPv6 */
#define URI_MAX 160u
#define STOP_POLL_MS 200    /* how often *opts->stop is looked at */
#define ACCEPT_PAUSE_MS 100 /* back off when out of file descriptors */
#define READS_PER_ROUND 32  /* recv() calls per client per poll round */

#if defined(__GNUC__) || defined(__clang__)
#define EA_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define EA_PRINTF(a, b)
#endif

/* ---- JRCP_v1 constants (spec §6.4, accessManager.h) ---------------------- */

#define JRCP_HDR 4u
#define JRCP_WAIT_FOR_CARD 0x00u
#define JRCP_APDU_DATA 0x01u
#define JRCP_ERROR_MSG 0x03u /* also CLOSE from the client */
#define JRCP_TERMINAL_INFO 0x04u
#define JRCP_DEBUG_INFO 0x07u
#define JRCP_LOCK 0x30u
#define JRCP_UNLOCK 0x31u

/* Largest message we send: header + the largest R-APDU. */
#define OUT_CAP (JRCP_HDR + EA_EMU_APDU_MAX)

struct client;
struct listener;

/* How the bytes of one connection become APDUs and answers. */
typedef struct framing {
    const char *name;
    /* Where the next received bytes go and how many the current message
     * still needs (never 0). */
    uint8_t *(*rx_want)(struct client *c, size_t *n);
    /* n bytes landed where rx_want said. May queue an answer (out_*), set
     * close_why, and must keep c->partial up to date. */
    void (*rx_got)(struct client *c, size_t n);
    /* Optional: per-connection state, made on accept (false: refuse the
     * client) and released when it goes. */
    bool (*attach)(struct client *c, const struct listener *l);
    void (*detach)(struct client *c);
    /* Tell a refused client why, in this framing (NULL: just close). */
    void (*refuse)(int fd, const char *why);
} framing;

/* JRCP_v1 receive state. */
typedef struct jrcp_rx {
    uint8_t hdr[JRCP_HDR];
    size_t hdr_n; /* header bytes received */
    size_t len;   /* payload length from the header */
    size_t got;   /* payload bytes received (kept or discarded) */
} jrcp_rx;

/* t1-tcp receive state (wire format in common/t1.h). */
typedef struct t1_rx {
    uint8_t hdr[EA_T1_TCP_HDR];
    size_t hdr_n; /* header bytes received */
    size_t len;   /* 'W': payload length */
    size_t got;   /* payload bytes received */
} t1_rx;

typedef struct client {
    const framing *fr;
    const char *via; /* listener URI, for the log */
    int fd;
    unsigned id;
    ea_emu_chan *ch;
    const char *dead;      /* reason, once dropped; reaped after the poll round */
    const char *close_why; /* close once out[] is sent, for this reason */
    bool draining;         /* last answer sent, write side shut, reading to EOF */
    bool partial;          /* a message has started but is not complete */
    uint64_t busy_since_ms; /* 0 = idle (nothing partial, nothing unsent) */
    unsigned long n_msgs, n_apdus;
    jrcp_rx j;
    t1_rx t;
    ea_t1_card *card;            /* t1-tcp: the card side of T=1 on this "bus" */
    uint8_t in[EA_EMU_APDU_MAX]; /* payload of the current message */
    uint8_t out[OUT_CAP];        /* the answer being sent */
    size_t out_n, out_off;
} client;

typedef enum lis_family { FAM_TCP, FAM_UNIX } lis_family;

typedef struct listener {
    int fd;
    const framing *fr;
    lis_family fam;
    bool owns_path; /* unix: we created the socket file */
    dev_t dev; /* of the socket file we created, to remove only ours */
    ino_t ino;
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
    char uri[URI_MAX];
    ea_t1_card_opts t1; /* t1-tcp: card options from the URI query */
} listener;

struct ea_serve {
    ea_emu *emu;
    bool answered; /* the last round served a JRCP_v1 client: spin before sleeping */
    volatile sig_atomic_t *stop;
    int verbose;
    unsigned stall_ms;
    size_t max_clients;
    int wake[2]; /* self-pipe: ea_serve_stop writes, the loop polls */
    listener lis[MAX_LISTENERS];
    size_t n_lis;
    client **cl;
    size_t n_cl;
    struct pollfd *pfd; /* 1 + n_lis + max_clients entries */
    client **pcl;       /* client polled at pfd[1 + n_lis + i] */
    uint64_t accept_pause_until_ms;
    unsigned next_id;
    unsigned long n_accepted;
    bool ran;
    int poll_errno;
};

/* ---- small helpers ---------------------------------------------------------- */

static EA_PRINTF(3, 4) void set_err(char *buf, size_t len, const char *fmt, ...)
{
    va_list ap;

    if (buf == NULL || len == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(buf, len, fmt, ap);
    va_end(ap);
}

static EA_PRINTF(2, 3) void vlog(const ea_serve *s, const char *fmt, ...)
{
    va_list ap;

    if (!s->verbose)
        return;
    fputs("edgeauth-se: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

static uint64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static int set_nonblock_cloexec(int fd)
{
    int fl = fcntl(fd, F_GETFL);

    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
        return -1;
    fl = fcntl(fd, F_GETFD);
    if (fl < 0 || fcntl(fd, F_SETFD, fl | FD_CLOEXEC) < 0)
        return -1;
    return 0;
}

/* ---- per-client output -------------------------------------------------------- */

/* Queue one JRCP_v1 message. Callers pass payloads that fit (all ours do);
 * anything larger is cut to an empty payload rather than overflowing. */
static void out_msg(client *c, uint8_t mty, const void *payload, size_t n)
{
    if (n > OUT_CAP - JRCP_HDR)
        n = 0;
    c->out[0] = mty;
    c->out[1] = 0x00;
    c->out[2] = (uint8_t)(n >> 8);
    c->out[3] = (uint8_t)n;
    if (n > 0)
        memcpy(c->out + JRCP_HDR, payload, n);
    c->out_n = JRCP_HDR + n;
    c->out_off = 0;
}

static void out_text(client *c, uint8_t mty, const char *text)
{
    out_msg(c, mty, text, strlen(text));
}

static void client_drop(client *c, const char *why)
{
    if (c->dead == NULL)
        c->dead = why;
}

/* Send what is queued, as far as the socket takes it. */
static void client_flush(client *c)
{
    while (c->out_off < c->out_n) {
        ssize_t w = send(c->fd, c->out + c->out_off, c->out_n - c->out_off, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                client_drop(c, "send failed");
            return;
        }
        c->out_off += (size_t)w;
    }
    /* R-APDUs can carry key material: do not leave it in the heap. */
    ea_cleanse(c->out, c->out_n);
    c->out_n = c->out_off = 0;
    if (c->close_why != NULL && !c->draining) {
        /* Closing with unread input would send a reset, which can destroy
         * the answer still in flight: half-close, then read to EOF. */
        c->draining = true;
        if (shutdown(c->fd, SHUT_WR) != 0)
            client_drop(c, c->close_why);
    }
}

/* ---- JRCP_v1 framing -------------------------------------------------------------- */

typedef void jrcp_fn(client *c, uint8_t mty, const uint8_t *p, size_t n, bool oversized);
static jrcp_fn jrcp_wait_for_card, jrcp_apdu, jrcp_close, jrcp_ack;

static const struct jrcp_route {
    uint8_t mty;
    jrcp_fn *fn;
} jrcp_routes[] = {
    { JRCP_WAIT_FOR_CARD, jrcp_wait_for_card },
    { JRCP_APDU_DATA, jrcp_apdu },
    { JRCP_ERROR_MSG, jrcp_close },
    { JRCP_TERMINAL_INFO, jrcp_ack },
    { JRCP_DEBUG_INFO, jrcp_ack },
    { JRCP_LOCK, jrcp_ack },   /* one chip, APDUs already serialised: */
    { JRCP_UNLOCK, jrcp_ack }, /* nothing to lock, echo as the AM does */
};

/* A (re)connect of the card: the reference server closes and reopens the SE,
 * so this client's selection, transient objects and sessions go. */
static void jrcp_wait_for_card(client *c, uint8_t mty, const uint8_t *p, size_t n,
                               bool oversized)
{
    size_t alen = EA_EMU_APDU_MAX;

    (void)p, (void)n, (void)oversized; /* the payload is a timeout: we never wait */
    ea_emu_chan_reset(c->ch);
    if (ea_emu_atr(c->out + JRCP_HDR, &alen) != EA_OK || alen > EA_EMU_APDU_MAX)
        alen = 0; /* an empty ATR means "no card" to the client */
    c->out[0] = mty;
    c->out[1] = 0x00;
    c->out[2] = (uint8_t)(alen >> 8);
    c->out[3] = (uint8_t)alen;
    c->out_n = JRCP_HDR + alen;
    c->out_off = 0;
}

static void jrcp_apdu(client *c, uint8_t mty, const uint8_t *p, size_t n, bool oversized)
{
    static const uint8_t sw_wrong_length[2] = { 0x67, 0x00 };
    static const uint8_t sw_no_diag[2] = { 0x6F, 0x00 };
    size_t rl = EA_EMU_APDU_MAX;
    ea_err rc;

    c->n_apdus++;
    if (oversized) {
        /* Longer than any C-APDU the chip takes: the bytes are gone already,
         * answer as a card answers a length it cannot process. */
        out_msg(c, mty, sw_wrong_length, sizeof sw_wrong_length);
        return;
    }
    rc = ea_emu_transceive(c->ch, p, n, c->out + JRCP_HDR, &rl);
    if (rc != EA_OK || rl < 2 || rl > EA_EMU_APDU_MAX) {
        out_msg(c, mty, sw_no_diag, sizeof sw_no_diag);
        return;
    }
    c->out[0] = mty;
    c->out[1] = 0x00;
    c->out[2] = (uint8_t)(rl >> 8);
    c->out[3] = (uint8_t)rl;
    c->out_n = JRCP_HDR + rl;
    c->out_off = 0;
}

static void jrcp_close(client *c, uint8_t mty, const uint8_t *p, size_t n, bool oversized)
{
    (void)p, (void)n, (void)oversized;
    out_msg(c, mty, NULL, 0);
    c->close_why = "closed by client";
}

static void jrcp_ack(client *c, uint8_t mty, const uint8_t *p, size_t n, bool oversized)
{
    (void)p, (void)n, (void)oversized;
    out_msg(c, mty, NULL, 0);
}

static void jrcp_dispatch(client *c, uint8_t mty, const uint8_t *p, size_t n, bool oversized)
{
    char text[64];

    c->n_msgs++;
    for (size_t i = 0; i < sizeof jrcp_routes / sizeof jrcp_routes[0]; i++) {
        if (jrcp_routes[i].mty == mty) {
            jrcp_routes[i].fn(c, mty, p, n, oversized);
            return;
        }
    }
    /* The length still framed the message, so the stream is intact: say no
     * and carry on. */
    snprintf(text, sizeof text, "unsupported message type 0x%02X", mty);
    out_text(c, JRCP_ERROR_MSG, text);
}

static uint8_t *jrcp_rx_want(client *c, size_t *n)
{
    jrcp_rx *j = &c->j;
    size_t left;

    if (j->hdr_n < JRCP_HDR) {
        *n = JRCP_HDR - j->hdr_n;
        return j->hdr + j->hdr_n;
    }
    left = j->len - j->got;
    if (j->len <= sizeof c->in) {
        *n = left;
        return c->in + j->got;
    }
    /* Oversized: read it through in[] and forget it, one buffer at a time. */
    *n = left < sizeof c->in ? left : sizeof c->in;
    return c->in;
}

static void jrcp_rx_got(client *c, size_t n)
{
    jrcp_rx *j = &c->j;
    bool oversized;

    c->partial = true;
    if (j->hdr_n < JRCP_HDR) {
        j->hdr_n += n;
        if (j->hdr_n < JRCP_HDR)
            return;
        if (j->hdr[1] != 0x00) {
            /* Not JRCP_v1 (NAD is always 00): the length cannot be trusted to
             * find the next message, so say why and hang up. */
            out_text(c, JRCP_ERROR_MSG, "bad NAD: not a JRCP_v1 message");
            c->close_why = "not JRCP_v1 (NAD not 00)";
            c->partial = false;
            return;
        }
        j->len = ((size_t)j->hdr[2] << 8) | j->hdr[3];
        j->got = 0;
    } else {
        j->got += n;
    }
    if (j->got < j->len)
        return;
    c->partial = false;
    j->hdr_n = 0;
    oversized = j->len > sizeof c->in;
    jrcp_dispatch(c, j->hdr[0], c->in, oversized ? 0 : j->len, oversized);
    /* C-APDUs can carry key material too. */
    ea_cleanse(c->in, oversized ? sizeof c->in : j->len);
}

static void jrcp_refuse(int fd, const char *why);

static const framing jrcp_framing = { "JRCP_v1", jrcp_rx_want, jrcp_rx_got, NULL, NULL,
                                      jrcp_refuse };

/* ---- t1-tcp framing: I2C transactions to the card side of T=1 --------------------- */

/* Each connection is one I2C bus with one SE: a card (protocol state) in
 * front of the client's own channel. */
static bool t1_attach(client *c, const struct listener *l)
{
    return ea_t1_card_new(c->ch, &l->t1, &c->card) == EA_OK;
}

static void t1_detach(client *c)
{
    ea_t1_card_stats st;

    ea_t1_card_get_stats(c->card, &st);
    c->n_apdus = st.apdus; /* for the disconnect log line */
    ea_t1_card_free(c->card);
    c->card = NULL;
}

static uint8_t *t1_rx_want(client *c, size_t *n)
{
    t1_rx *t = &c->t;

    if (t->hdr_n < EA_T1_TCP_HDR) {
        *n = EA_T1_TCP_HDR - t->hdr_n;
        return t->hdr + t->hdr_n;
    }
    *n = t->len - t->got; /* only a 'W' with bytes still to come gets here */
    return c->in + t->got;
}

/* A complete transaction: run it on the card, queue the answer. */
static void t1_transaction(client *c)
{
    t1_rx *t = &c->t;
    size_t n = ((size_t)t->hdr[1] << 8) | t->hdr[2];

    c->n_msgs++;
    if (t->hdr[0] == EA_T1_TCP_WRITE) {
        c->out[0] = ea_t1_card_write(c->card, c->in, n, now_ms()) ? EA_T1_TCP_ACK
                                                                   : EA_T1_TCP_NACK;
        c->out_n = 1;
        ea_cleanse(c->in, n); /* blocks carry APDU bytes */
    } else if (ea_t1_card_read(c->card, c->out + 1, n, now_ms())) {
        c->out[0] = EA_T1_TCP_ACK;
        c->out_n = 1 + n;
    } else {
        c->out[0] = EA_T1_TCP_NACK;
        c->out_n = 1;
    }
    c->out_off = 0;
    c->partial = false;
    t->hdr_n = 0;
    t->len = t->got = 0;
}

static void t1_rx_got(client *c, size_t n)
{
    t1_rx *t = &c->t;

    c->partial = true;
    if (t->hdr_n < EA_T1_TCP_HDR) {
        size_t len;

        t->hdr_n += n;
        if (t->hdr_n < EA_T1_TCP_HDR)
            return;
        len = ((size_t)t->hdr[1] << 8) | t->hdr[2];
        /* The stream has no way to resynchronise: a bad header ends it. */
        if (t->hdr[0] == EA_T1_TCP_WRITE && len <= EA_T1_TCP_XFER_MAX) {
            t->len = len;
            t->got = 0;
            if (len > 0)
                return;
        } else if (t->hdr[0] != EA_T1_TCP_READ || len == 0 || len > EA_T1_TCP_XFER_MAX) {
            client_drop(c, "not t1-tcp (bad message type or length)");
            return;
        }
    } else {
        t->got += n;
        if (t->got < t->len)
            return;
    }
    t1_transaction(c);
}

static const framing t1_framing = { "T=1 over I2C over TCP", t1_rx_want, t1_rx_got, t1_attach,
                                    t1_detach, NULL };

/* ---- listeners ------------------------------------------------------------------------- */

/* Listen URI schemes. A new framing adds a row here (e.g. "t1-tcp://"). */
static const struct scheme {
    const char *prefix;
    lis_family fam;
    const framing *fr;
} schemes[] = {
    { "tcp://", FAM_TCP, &jrcp_framing },
    { "unix:", FAM_UNIX, &jrcp_framing },
    { "t1-tcp://", FAM_TCP, &t1_framing },
};

static bool addr_is_loopback(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)(const void *)sa;
        return (ntohl(in->sin_addr.s_addr) >> 24) == 127u;
    }
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)(const void *)sa;
        const uint8_t *b = in6->sin6_addr.s6_addr;
        if (IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr))
            return true;
        return IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr) && b[12] == 127u;
    }
    return false;
}

static void addr_text(const struct sockaddr *sa, char *out, size_t len)
{
    char host[INET6_ADDRSTRLEN] = "?";

    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)(const void *)sa;
        inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
        snprintf(out, len, "%s:%u", host, (unsigned)ntohs(in->sin_port));
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)(const void *)sa;
        inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
        snprintf(out, len, "[%s]:%u", host, (unsigned)ntohs(in6->sin6_port));
    } else {
        snprintf(out, len, "local");
    }
}

/* Split "HOST[:PORT]" / "[V6][:PORT]" after "tcp://". */
static ea_err parse_hostport(const char *uri, const char *rest, char *host, size_t hlen,
                             char *port, size_t plen, char *errbuf, size_t errlen)
{
    const char *h = rest, *hend, *p = NULL;
    unsigned long pv = EA_SERVE_DEFAULT_PORT;

    if (*rest == '[') {
        h = rest + 1;
        hend = strchr(h, ']');
        if (hend == NULL || (hend[1] != '\0' && hend[1] != ':')) {
            set_err(errbuf, errlen, "%s: unterminated [IPv6] address", uri);
            return EA_ERR_ARG;
        }
        if (hend[1] == ':')
            p = hend + 2;
    } else {
        hend = strchr(h, ':');
        if (hend != NULL) {
            p = hend + 1;
            if (strchr(p, ':') != NULL) {
                set_err(errbuf, errlen, "%s: write IPv6 addresses in brackets, tcp://[::1]:PORT",
                        uri);
                return EA_ERR_ARG;
            }
        } else {
            hend = h + strlen(h);
        }
    }
    if (hend == h || (size_t)(hend - h) >= hlen) {
        set_err(errbuf, errlen, "%s: missing or too long host", uri);
        return EA_ERR_ARG;
    }
    memcpy(host, h, (size_t)(hend - h));
    host[hend - h] = '\0';
    if (p != NULL) {
        char *end = NULL;
        if (*p < '0' || *p > '9') {
            set_err(errbuf, errlen, "%s: bad port", uri);
            return EA_ERR_ARG;
        }
        errno = 0;
        pv = strtoul(p, &end, 10);
        if (errno != 0 || *end != '\0' || pv > 65535u) {
            set_err(errbuf, errlen, "%s: bad port", uri);
            return EA_ERR_ARG;
        }
    }
    snprintf(port, plen, "%lu", pv);
    return EA_OK;
}

static ea_err listen_one_tcp(ea_serve *s, const char *uri, const struct addrinfo *ai,
                             const struct scheme *sc, const ea_t1_card_opts *t1o, char *errbuf,
                             size_t errlen)
{
    listener *l;
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    char at[64]; /* "[" IPv6 "]:" port */
    int fd, one = 1;

    if (s->n_lis >= MAX_LISTENERS) {
        set_err(errbuf, errlen, "%s: too many listeners", uri);
        return EA_ERR_ARG;
    }
    fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
    if (fd < 0) {
        set_err(errbuf, errlen, "%s: socket: %s", uri, strerror(errno));
        return EA_ERR_IO;
    }
    l = &s->lis[s->n_lis];
    memset(l, 0, sizeof *l);
    l->fd = fd;
    l->fr = sc->fr;
    l->fam = FAM_TCP;
    l->t1 = *t1o;
    s->n_lis++; /* from here on ea_serve_free closes it */
    /* SO_REUSEADDR: a restart must not wait out TIME_WAIT; Linux still
     * refuses a second live listener on the same port. */
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (ai->ai_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    addr_text(ai->ai_addr, at, sizeof at);
    if (set_nonblock_cloexec(fd) != 0 || bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 ||
        listen(fd, 16) != 0) {
        set_err(errbuf, errlen, "%s: cannot listen on %s: %s", uri, at, strerror(errno));
        return EA_ERR_IO;
    }
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) != 0) {
        set_err(errbuf, errlen, "%s: getsockname: %s", uri, strerror(errno));
        return EA_ERR_IO;
    }
    addr_text((const struct sockaddr *)&ss, at, sizeof at);
    snprintf(l->uri, sizeof l->uri, "%s%s", sc->prefix, at);
    return EA_OK;
}

/* t1-tcp card options: "wtx=N&busy_ms=N&wtx_mult=N" (test hooks: force WTX
 * requests, make the card look busy for a while after each command). */
static ea_err parse_t1_opts(const char *uri, const char *q, ea_t1_card_opts *o, char *errbuf,
                            size_t errlen)
{
    static const struct {
        const char *key;
        unsigned long max;
    } keys[] = { { "wtx", 1000 }, { "busy_ms", 60000 }, { "wtx_mult", 255 } };

    while (*q != '\0') {
        const char *amp = strchr(q, '&'), *eq = strchr(q, '=');
        size_t kl, i;
        unsigned long v;
        char *end = NULL;

        if (eq == NULL || (amp != NULL && eq > amp)) {
            set_err(errbuf, errlen, "%s: expected ?key=value[&key=value]", uri);
            return EA_ERR_ARG;
        }
        kl = (size_t)(eq - q);
        for (i = 0; i < sizeof keys / sizeof keys[0]; i++)
            if (strlen(keys[i].key) == kl && strncmp(keys[i].key, q, kl) == 0)
                break;
        errno = 0;
        v = strtoul(eq + 1, &end, 10);
        if (i == sizeof keys / sizeof keys[0] || eq[1] < '0' || eq[1] > '9' || errno != 0 ||
            (*end != '\0' && *end != '&') || v > keys[i].max) {
            set_err(errbuf, errlen,
                    "%s: bad option '%.*s' (wtx=0..1000, busy_ms=0..60000, wtx_mult=1..255)", uri,
                    (int)(amp != NULL ? (size_t)(amp - q) : strlen(q)), q);
            return EA_ERR_ARG;
        }
        if (i == 0)
            o->wtx_count = (unsigned)v;
        else if (i == 1)
            o->busy_ms = (unsigned)v;
        else
            o->wtx_mult = (uint8_t)v;
        q = amp != NULL ? amp + 1 : end;
    }
    return EA_OK;
}

static ea_err listen_tcp(ea_serve *s, const char *uri, const struct scheme *sc, const char *rest,
                         int allow_remote, char *errbuf, size_t errlen)
{
    char host[URI_MAX], port[8], hp[URI_MAX];
    struct addrinfo hints, *res = NULL, *ai;
    ea_t1_card_opts t1o;
    const char *q = strchr(rest, '?');
    ea_err rc = EA_ERR_INTERNAL;
    int g;

    memset(&t1o, 0, sizeof t1o);
    if (q != NULL) {
        if (sc->fr != &t1_framing) {
            set_err(errbuf, errlen, "%s: options (?...) are for t1-tcp:// only", uri);
            return EA_ERR_ARG;
        }
        if ((size_t)(q - rest) >= sizeof hp) {
            set_err(errbuf, errlen, "%s: address too long", uri);
            return EA_ERR_ARG;
        }
        if ((rc = parse_t1_opts(uri, q + 1, &t1o, errbuf, errlen)) != EA_OK)
            return rc;
        memcpy(hp, rest, (size_t)(q - rest));
        hp[q - rest] = '\0';
        rest = hp;
    }
    rc = parse_hostport(uri, rest, host, sizeof host, port, sizeof port, errbuf, errlen);
    if (rc != EA_OK)
        return rc;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    g = getaddrinfo(host, port, &hints, &res);
    if (g != 0) {
        set_err(errbuf, errlen, "%s: cannot resolve %s: %s", uri, host, gai_strerror(g));
        return EA_ERR_ARG;
    }
    /* Check every address before binding any: all or nothing. */
    for (ai = res; ai != NULL; ai = ai->ai_next) {
        char at[URI_MAX];
        if (allow_remote || addr_is_loopback(ai->ai_addr))
            continue;
        addr_text(ai->ai_addr, at, sizeof at);
        set_err(errbuf, errlen,
                "%s: %s is not a loopback address; %s has no authentication, so listening "
                "beyond this host needs --allow-remote",
                uri, at, sc->fr == &t1_framing ? "t1-tcp" : "JRCP_v1");
        freeaddrinfo(res);
        return EA_ERR_ARG;
    }
    rc = EA_OK;
    for (ai = res; ai != NULL && rc == EA_OK; ai = ai->ai_next)
        rc = listen_one_tcp(s, uri, ai, sc, &t1o, errbuf, errlen);
    freeaddrinfo(res);
    return rc;
}

/* Is somebody accepting on this unix socket path? */
static bool unix_is_live(const struct sockaddr_un *sun)
{
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    bool live;

    if (fd < 0)
        return false;
    live = connect(fd, (const struct sockaddr *)sun, sizeof *sun) == 0 || errno == EAGAIN;
    close(fd);
    return live;
}

static ea_err listen_unix(ea_serve *s, const char *uri, const char *rest, const framing *fr,
                          char *errbuf, size_t errlen)
{
    struct sockaddr_un sun;
    struct stat st;
    listener *l;
    const char *path = rest;
    int fd;

    if (strncmp(path, "//", 2) == 0)
        path += 2; /* unix:///run/x.sock */
    if (*path == '\0' || strlen(path) >= sizeof sun.sun_path) {
        set_err(errbuf, errlen, "%s: socket path empty or longer than %zu bytes", uri,
                sizeof sun.sun_path - 1);
        return EA_ERR_ARG;
    }
    if (s->n_lis >= MAX_LISTENERS) {
        set_err(errbuf, errlen, "%s: too many listeners", uri);
        return EA_ERR_ARG;
    }
    memset(&sun, 0, sizeof sun);
    sun.sun_family = AF_UNIX;
    memcpy(sun.sun_path, path, strlen(path) + 1);
    if (lstat(path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode)) {
            set_err(errbuf, errlen, "%s: %s exists and is not a socket; not replacing it", uri,
                    path);
            return EA_ERR_EXISTS;
        }
        if (unix_is_live(&sun)) {
            set_err(errbuf, errlen, "%s: another server is listening on %s", uri, path);
            return EA_ERR_EXISTS;
        }
        if (unlink(path) != 0 && errno != ENOENT) { /* stale: left by a killed server */
            set_err(errbuf, errlen, "%s: cannot remove stale socket: %s", uri, strerror(errno));
            return EA_ERR_IO;
        }
    }
    fd = socket(AF_UNIX, SOCK_STREAM, 0);
    if (fd < 0) {
        set_err(errbuf, errlen, "%s: socket: %s", uri, strerror(errno));
        return EA_ERR_IO;
    }
    l = &s->lis[s->n_lis];
    memset(l, 0, sizeof *l);
    l->fd = fd;
    l->fr = fr;
    l->fam = FAM_UNIX;
    s->n_lis++;
    if (set_nonblock_cloexec(fd) != 0 || bind(fd, (const struct sockaddr *)&sun, sizeof sun) != 0) {
        set_err(errbuf, errlen, "%s: cannot bind: %s", uri, strerror(errno));
        return EA_ERR_IO;
    }
    if (lstat(path, &st) == 0) { /* ours now: ea_serve_free removes it */
        l->owns_path = true;
        l->dev = st.st_dev;
        l->ino = st.st_ino;
        memcpy(l->path, path, strlen(path) + 1);
    }
    /* chmod before listen(): until then nobody can connect, so there is no
     * window with the umask's looser mode. */
    if (chmod(path, 0600) != 0 || listen(fd, 16) != 0) {
        set_err(errbuf, errlen, "%s: cannot listen: %s", uri, strerror(errno));
        return EA_ERR_IO;
    }
    snprintf(l->uri, sizeof l->uri, "unix:%s", path);
    return EA_OK;
}

static ea_err listen_uri(ea_serve *s, const char *uri, int allow_remote, char *errbuf,
                         size_t errlen)
{
    for (size_t i = 0; i < sizeof schemes / sizeof schemes[0]; i++) {
        size_t pl = strlen(schemes[i].prefix);
        if (strncmp(uri, schemes[i].prefix, pl) != 0)
            continue;
        if (schemes[i].fam == FAM_TCP)
            return listen_tcp(s, uri, &schemes[i], uri + pl, allow_remote, errbuf, errlen);
        return listen_unix(s, uri, uri + pl, schemes[i].fr, errbuf, errlen);
    }
    set_err(errbuf, errlen,
            "%s: unknown listen URI (use tcp://HOST:PORT, unix:PATH or t1-tcp://HOST:PORT)", uri);
    return EA_ERR_ARG;
}

/* ---- clients ------------------------------------------------------------------------------ */

static void client_free(ea_serve *s, client *c, size_t left)
{
    if (c->fr->detach != NULL)
        c->fr->detach(c);
    vlog(s, "client #%u (%s) closed: %s; %lu message(s), %lu APDU(s); %zu client(s) open",
         c->id, c->via, c->dead ? c->dead : "server stopping", c->n_msgs, c->n_apdus, left);
    ea_emu_chan_close(c->ch);
    close(c->fd);
    ea_cleanse(c, sizeof *c);
    free(c);
}

/* JRCP_v1 way to refuse a connection: one best-effort ERROR_MSG. */
static void jrcp_refuse(int fd, const char *why)
{
    uint8_t m[JRCP_HDR + 64];
    size_t n = strlen(why);

    if (n > sizeof m - JRCP_HDR)
        n = sizeof m - JRCP_HDR;
    m[0] = JRCP_ERROR_MSG;
    m[1] = 0x00;
    m[2] = 0x00;
    m[3] = (uint8_t)n;
    memcpy(m + JRCP_HDR, why, n);
    (void)!send(fd, m, JRCP_HDR + n, MSG_NOSIGNAL | MSG_DONTWAIT);
}

/* Refuse a connection we cannot serve: say why if the framing can, close. */
static void refuse(const listener *l, int fd, const char *why)
{
    if (l->fr->refuse != NULL)
        l->fr->refuse(fd, why);
    close(fd);
}

static void accept_all(ea_serve *s, listener *l)
{
    for (;;) {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof ss;
        char peer[URI_MAX];
        client *c;
        int fd = accept(l->fd, (struct sockaddr *)&ss, &sl);

        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                /* The pending connection stays pending; without a pause poll
                 * would report it again at once and spin. */
                vlog(s, "accept on %s: %s; pausing", l->uri, strerror(errno));
                s->accept_pause_until_ms = now_ms() + ACCEPT_PAUSE_MS;
            }
            return; /* EAGAIN: nothing more pending */
        }
        s->n_accepted++;
        if (set_nonblock_cloexec(fd) != 0) {
            close(fd);
            continue;
        }
        if (l->fam == FAM_TCP) {
            int one = 1; /* one message per write already: no need to wait */
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        }
        addr_text((const struct sockaddr *)&ss, peer, sizeof peer);
        if (s->n_cl >= s->max_clients) {
            vlog(s, "refusing client from %s on %s: %zu clients open", peer, l->uri, s->n_cl);
            refuse(l, fd, "too many clients");
            continue;
        }
        c = calloc(1, sizeof *c);
        if (c == NULL || ea_emu_chan_open(s->emu, &c->ch) != EA_OK) {
            vlog(s, "refusing client from %s on %s: cannot open a channel", peer, l->uri);
            free(c);
            refuse(l, fd, "cannot open a channel");
            continue;
        }
        if (l->fr->attach != NULL && !l->fr->attach(c, l)) {
            vlog(s, "refusing client from %s on %s: out of memory", peer, l->uri);
            ea_emu_chan_close(c->ch);
            free(c);
            refuse(l, fd, "out of memory");
            continue;
        }
        c->fr = l->fr;
        c->via = l->uri;
        c->fd = fd;
        c->id = ++s->next_id;
        s->cl[s->n_cl++] = c;
        vlog(s, "client #%u connected on %s from %s; %zu client(s) open", c->id, l->uri, peer,
             s->n_cl);
    }
}

/* After the last answer: discard input until the peer closes. */
static void client_drain(client *c)
{
    for (int k = 0; k < READS_PER_ROUND; k++) {
        ssize_t r = recv(c->fd, c->in, sizeof c->in, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (r <= 0) {
            client_drop(c, c->close_why);
            return;
        }
    }
}

/* Read at most one complete message and answer it. */
static void client_read(client *c)
{
    for (int k = 0; k < READS_PER_ROUND && c->dead == NULL; k++) {
        size_t want;
        uint8_t *dst = c->fr->rx_want(c, &want);
        ssize_t r = recv(c->fd, dst, want, 0);

        if (r == 0) {
            client_drop(c, c->partial ? "peer closed mid-message" : "peer closed");
            return;
        }
        if (r < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                client_drop(c, "receive failed");
            return;
        }
        c->fr->rx_got(c, (size_t)r);
        if (c->out_n > 0) {
            client_flush(c);
            return;
        }
    }
}

static void client_io(client *c, short revents)
{
    if (c->out_n > 0 && (revents & (POLLOUT | POLLERR | POLLHUP)) != 0)
        client_flush(c);
    if (c->dead != NULL || c->out_n > 0 || (revents & (POLLIN | POLLERR | POLLHUP)) == 0)
        return;
    if (c->draining)
        client_drain(c);
    else
        client_read(c);
}

/* Track how long a client has been mid-message or unable to take its
 * answer, and drop it past stall_ms. */
static void client_check_stall(const ea_serve *s, client *c, uint64_t now)
{
    bool busy = c->partial || c->out_n > 0 || c->draining;

    if (!busy) {
        c->busy_since_ms = 0;
        return;
    }
    if (c->busy_since_ms == 0)
        c->busy_since_ms = now;
    else if (now - c->busy_since_ms >= s->stall_ms)
        client_drop(c, c->partial    ? "message incomplete for too long"
                       : c->draining ? c->close_why
                                     : "answer not read for too long");
}

static void reap(ea_serve *s)
{
    size_t w = 0, left = s->n_cl;

    for (size_t i = 0; i < s->n_cl; i++) {
        if (s->cl[i]->dead != NULL)
            client_free(s, s->cl[i], --left);
        else
            s->cl[w++] = s->cl[i];
    }
    s->n_cl = w;
}

/* ---- the loop ------------------------------------------------------------------------------ */

static int poll_timeout(const ea_serve *s, uint64_t now)
{
    uint64_t t = UINT64_MAX;

    if (s->stop != NULL)
        t = STOP_POLL_MS;
    if (s->accept_pause_until_ms > now && s->accept_pause_until_ms - now < t)
        t = s->accept_pause_until_ms - now;
    for (size_t i = 0; i < s->n_cl; i++) {
        const client *c = s->cl[i];
        uint64_t left;
        if (c->busy_since_ms == 0)
            continue;
        left = now - c->busy_since_ms >= s->stall_ms ? 0 : s->stall_ms - (now - c->busy_since_ms);
        if (left < t)
            t = left;
    }
    return t == UINT64_MAX ? -1 : (int)(t > 60000u ? 60000u : t);
}

static size_t build_pollset(ea_serve *s, uint64_t now)
{
    size_t n = 0;
    bool paused = s->accept_pause_until_ms > now;

    s->pfd[n++] = (struct pollfd){ .fd = s->wake[0], .events = POLLIN };
    for (size_t i = 0; i < s->n_lis; i++)
        s->pfd[n++] = (struct pollfd){ .fd = paused ? -1 : s->lis[i].fd, .events = POLLIN };
    for (size_t i = 0; i < s->n_cl; i++) {
        client *c = s->cl[i];
        short ev = c->out_n > 0 ? POLLOUT : POLLIN;
        s->pcl[i] = c;
        s->pfd[n++] = (struct pollfd){ .fd = c->fd, .events = ev };
    }
    return n;
}

static bool drain_wake(ea_serve *s)
{
    uint8_t b[64];
    bool any = false;

    while (read(s->wake[0], b, sizeof b) > 0)
        any = true;
    return any;
}

#define SPIN_NS 40000L /* see ea_spin_poll */

ea_err ea_serve_run(ea_serve *s)
{
    if (s == NULL)
        return EA_ERR_ARG;
    s->ran = true;
    for (;;) {
        uint64_t now = now_ms();
        size_t n_polled_cl = s->n_cl;
        size_t n = build_pollset(s, now);
        int r;

        if (s->stop != NULL && *s->stop)
            return EA_OK;
        /* Right after an answer the client's next command usually follows
         * within microseconds: look for it briefly before sleeping, which
         * saves a scheduler round trip per APDU (bounded CPU cost). */
        r = s->answered ? ea_spin_poll(s->pfd, n, SPIN_NS) : 0;
        s->answered = false;
        if (r == 0)
            r = poll(s->pfd, (nfds_t)n, poll_timeout(s, now));
        if (r < 0) {
            if (errno == EINTR)
                continue; /* a signal: *stop or the self-pipe tells if it was ours */
            s->poll_errno = errno;
            return EA_ERR_IO;
        }
        if ((s->pfd[0].revents & POLLIN) != 0 && drain_wake(s))
            return EA_OK;
        for (size_t i = 0; i < n_polled_cl; i++) {
            short re = s->pfd[1 + s->n_lis + i].revents;
            if (re != 0) {
                /* T=1 clients exchange many small frames with the card
                 * side stepping in between: no spinning for them. */
                if (s->pcl[i]->card == NULL)
                    s->answered = true;
                client_io(s->pcl[i], re);
            }
        }
        for (size_t i = 0; i < s->n_lis; i++) {
            if ((s->pfd[1 + i].revents & POLLIN) != 0)
                accept_all(s, &s->lis[i]);
        }
        now = now_ms();
        for (size_t i = 0; i < s->n_cl; i++)
            client_check_stall(s, s->cl[i], now);
        reap(s);
    }
}

void ea_serve_stop(ea_serve *s)
{
    int saved = errno; /* may run in a signal handler */

    if (s != NULL && s->wake[1] >= 0)
        (void)!write(s->wake[1], "", 1); /* a full pipe already means "stop" */
    errno = saved;
}

/* ---- life cycle -------------------------------------------------------------------------- */

ea_err ea_serve_new(ea_emu *emu, const ea_serve_opts *o, ea_serve **out, char *errbuf,
                    size_t errlen)
{
    static const char *const default_uri[] = { EA_SERVE_DEFAULT_URI };
    const char *const *uris;
    size_t n_uris;
    ea_serve *s;
    ea_err rc = EA_ERR_INTERNAL;

    if (out != NULL)
        *out = NULL;
    if (emu == NULL || o == NULL || out == NULL || (o->n_listen > 0 && o->listen == NULL)) {
        set_err(errbuf, errlen, "invalid argument");
        return EA_ERR_ARG;
    }
    uris = o->n_listen > 0 ? o->listen : default_uri;
    n_uris = o->n_listen > 0 ? o->n_listen : 1;
    if (n_uris > EA_SERVE_MAX_LISTEN) {
        set_err(errbuf, errlen, "at most %u listen URIs", EA_SERVE_MAX_LISTEN);
        return EA_ERR_ARG;
    }
    s = calloc(1, sizeof *s);
    if (s == NULL) {
        set_err(errbuf, errlen, "out of memory");
        return EA_ERR_NO_MEMORY;
    }
    s->emu = emu;
    s->stop = o->stop;
    s->verbose = o->verbose;
    s->stall_ms = o->stall_ms ? o->stall_ms : EA_SERVE_DEFAULT_STALL_MS;
    s->max_clients = o->max_clients ? o->max_clients : EA_SERVE_DEFAULT_CLIENTS;
    s->wake[0] = s->wake[1] = -1;
    s->cl = calloc(s->max_clients, sizeof *s->cl);
    s->pcl = calloc(s->max_clients, sizeof *s->pcl);
    s->pfd = calloc(1 + MAX_LISTENERS + s->max_clients, sizeof *s->pfd);
    if (s->cl == NULL || s->pcl == NULL || s->pfd == NULL) {
        set_err(errbuf, errlen, "out of memory");
        rc = EA_ERR_NO_MEMORY;
        goto fail;
    }
    if (pipe(s->wake) != 0 || set_nonblock_cloexec(s->wake[0]) != 0 ||
        set_nonblock_cloexec(s->wake[1]) != 0) {
        set_err(errbuf, errlen, "pipe: %s", strerror(errno));
        rc = EA_ERR_IO;
        goto fail;
    }
    for (size_t i = 0; i < n_uris; i++) {
        if (uris[i] == NULL) {
            set_err(errbuf, errlen, "listen URI %zu is NULL", i);
            rc = EA_ERR_ARG;
            goto fail;
        }
        rc = listen_uri(s, uris[i], o->allow_remote, errbuf, errlen);
        if (rc != EA_OK)
            goto fail;
    }
    for (size_t i = 0; i < s->n_lis; i++)
        vlog(s, "listening on %s (%s)", s->lis[i].uri, s->lis[i].fr->name);
    *out = s;
    return EA_OK;
fail:
    ea_serve_free(s);
    return rc;
}

size_t ea_serve_count(const ea_serve *s)
{
    return s != NULL ? s->n_lis : 0;
}

const char *ea_serve_uri(const ea_serve *s, size_t i)
{
    return s != NULL && i < s->n_lis ? s->lis[i].uri : NULL;
}

void ea_serve_free(ea_serve *s)
{
    if (s == NULL)
        return;
    for (size_t i = 0; s->cl != NULL && i < s->n_cl; i++)
        client_free(s, s->cl[i], s->n_cl - i - 1);
    s->n_cl = 0;
    for (size_t i = 0; i < s->n_lis; i++) {
        listener *l = &s->lis[i];
        struct stat st;
        close(l->fd);
        /* Remove the socket file only if it is still the one we made. */
        if (l->owns_path && lstat(l->path, &st) == 0 && st.st_dev == l->dev &&
            st.st_ino == l->ino)
            unlink(l->path);
    }
    if (s->ran)
        vlog(s, "stopped after %lu connection(s)", s->n_accepted);
    if (s->wake[0] >= 0)
        close(s->wake[0]);
    if (s->wake[1] >= 0)
        close(s->wake[1]);
    free(s->cl);
    free(s->pcl);
    free(s->pfd);
    free(s);
}

ea_err ea_emu_serve(ea_emu *emu, const ea_serve_opts *opts, char *errbuf, size_t errlen)
{
    ea_serve *s = NULL;
    ea_err rc = ea_serve_new(emu, opts, &s, errbuf, errlen);

    if (rc != EA_OK)
        return rc;
    if (opts->ready != NULL)
        opts->ready(opts->ready_ctx);
    rc = ea_serve_run(s);
    if (rc != EA_OK)
        set_err(errbuf, errlen, "poll: %s", strerror(s->poll_errno));
    ea_serve_free(s);
    return rc;
}
