/* emu:DIR — the emulator in this process (the embedded default). The only
 * place where host/ calls into emu/, and only through its public API. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "edgeauth/emu.h"
#include "host/transport.h"

typedef struct tr_emu {
    ea_transport base;
    ea_emu *emu;
    ea_emu_chan *ch;
    char dir[1024];
} tr_emu;

static ea_err e_open(ea_transport *t, char *err, size_t errlen)
{
    tr_emu *e = (tr_emu *)t;
    ea_emu_opts o = { .holder = "edgeauth (emu: in-process)" };
    ea_err rc;
    if (!e->emu && (rc = ea_emu_open(e->dir, &o, &e->emu, err, errlen)) != EA_OK)
        return rc;
    if (!e->ch && (rc = ea_emu_chan_open(e->emu, &e->ch)) != EA_OK)
        return rc;
    ea_emu_chan_reset(e->ch);
    return EA_OK;
}

static ea_err e_xfer(ea_transport *t, const uint8_t *c, size_t cl, uint8_t *r, size_t *rl, int timeout_ms,
                     char *err, size_t errlen)
{
    tr_emu *e = (tr_emu *)t;
    (void)timeout_ms;
    ea_err rc = ea_emu_transceive(e->ch, c, cl, r, rl);
    if (rc != EA_OK)
        snprintf(err, errlen, "emu:%s: %s", e->dir, ea_err_str(rc));
    return rc;
}

static void e_close(ea_transport *t)
{
    tr_emu *e = (tr_emu *)t;
    ea_emu_chan_close(e->ch);
    e->ch = NULL;
    ea_emu_close(e->emu);
    e->emu = NULL;
}

static void e_free(ea_transport *t)
{
    e_close(t);
    free(t);
}

static const ea_transport_ops emu_ops = { "emu", e_open, e_xfer, e_close, e_free };

ea_err ea_tr_emu_new(const char *dir, ea_transport **out, char *err, size_t errlen)
{
    tr_emu *e;
    if (!dir || !*dir || strlen(dir) >= sizeof e->dir) {
        snprintf(err, errlen, "emu: needs a state directory (emu:DIR)");
        return EA_ERR_ARG;
    }
    if (!(e = calloc(1, sizeof *e)))
        return EA_ERR_NO_MEMORY;
    e->base.ops = &emu_ops;
    snprintf(e->dir, sizeof e->dir, "%s", dir);
    *out = &e->base;
    return EA_OK;
}
