/* URI -> transport. */
#include <stdio.h>
#include <string.h>

#include "host/transport.h"

ea_err ea_transport_new(const char *uri, ea_transport **out, char *err, size_t errlen)
{
    if (!uri || !out)
        return EA_ERR_ARG;
    if (!strncmp(uri, "emu:", 4))
        return ea_tr_emu_new(uri + 4, out, err, errlen);
    if (!strncmp(uri, "tcp://", 6) || !strncmp(uri, "unix:", 5))
        return ea_tr_jrcp_new(uri, out, err, errlen);
    if (!strncmp(uri, "t1-tcp://", 9))
        return ea_tr_t1_tcp_new(uri + 9, out, err, errlen);
    if (!strncmp(uri, "i2c:", 4))
        return ea_tr_t1_i2c_new(uri + 4, out, err, errlen);
    snprintf(err, errlen, "%s: unknown SE URI (use emu:DIR, tcp://HOST:PORT, unix:PATH, "
                          "t1-tcp://HOST:PORT or i2c:/dev/i2c-N[@0xADDR])", uri);
    return EA_ERR_ARG;
}
