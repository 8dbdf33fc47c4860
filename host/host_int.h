/* Internal: the session object and the one exchange helper. */
#ifndef EA_HOST_INT_H
#define EA_HOST_INT_H

#include <pthread.h>
#include <stdbool.h>

#include "common/scp03.h"
#include "common/tlv.h"
#include "edgeauth/host.h"
#include "host/transport.h"

struct ea_host {
    pthread_mutex_t lock;
    ea_transport *tr;
    bool connected;
    int timeout_ms;
    char uri[1100];
    uint16_t last_sw;
    char last_error[320];
    ea_host_trace_fn *trace;
    void *trace_ctx;
    ea_se_version version;
    /* Platform SCP03: static keys (has_scp03) and the session of the
     * current connection (scp_active after the handshake). */
    bool has_scp03;
    bool scp_active;
    ea_scp03_keys scp_keys;
    ea_scp03_session scp;
    char scp_source[200]; /* where the keys came from, for messages */
};

/* How the body is framed: short Lc when it fits, or always extended with
 * Le 00 00 (what NXP's hosts use for commands with long answers). */
enum { FRAME_SHORT = 0, FRAME_EXT = 1 };

/* Build the C-APDU, exchange it (reconnecting first if the link broke),
 * require SW 9000 and copy the response body to rsp (*rsp_len = capacity
 * in, length out; rsp may be NULL when no body is expected). what/id name
 * the command and object in the error message (id 0: none). */
ea_err host_cmd(ea_host *h, const char *what, uint32_t id, uint8_t ins, uint8_t p1, uint8_t p2,
                const uint8_t *body, size_t blen, int frame, uint8_t *rsp, size_t *rsp_len);

#endif
