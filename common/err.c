#include <stddef.h>

#include "edgeauth/err.h"

static const char *const err_str[] = {
    [EA_OK] = "ok",
    [EA_ERR_ARG] = "invalid argument",
    [EA_ERR_BUF_TOO_SMALL] = "buffer too small",
    [EA_ERR_MALFORMED] = "malformed input",
    [EA_ERR_AUTH] = "authentication failed",
    [EA_ERR_DENIED] = "denied by object policy",
    [EA_ERR_NOT_FOUND] = "not found",
    [EA_ERR_EXISTS] = "already exists",
    [EA_ERR_CONDITIONS] = "conditions of use not satisfied",
    [EA_ERR_WRONG_DATA] = "wrong data",
    [EA_ERR_FULL] = "no space left",
    [EA_ERR_UNSUPPORTED] = "not supported",
    [EA_ERR_CORRUPT] = "stored data is corrupt",
    [EA_ERR_LOCKED] = "locked by another process",
    [EA_ERR_NO_MEMORY] = "out of memory",
    [EA_ERR_IO] = "input/output error",
    [EA_ERR_TIMEOUT] = "timed out",
    [EA_ERR_CRYPTO] = "crypto library failure",
    [EA_ERR_INTERNAL] = "internal error",
    [EA_ERR_CARD] = "unexpected status word from the secure element",
    [EA_ERR_POLICY] = "invalid object policy",
};
_Static_assert(sizeof err_str / sizeof err_str[0] == EA_ERR_COUNT_, "add the string");

const char *ea_err_str(ea_err e)
{
    if ((unsigned)e >= EA_ERR_COUNT_ || err_str[e] == NULL)
        return "unknown error";
    return err_str[e];
}
