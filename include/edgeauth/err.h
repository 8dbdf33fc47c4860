/* edgeauth — library error codes.
 *
 * One enum for every library failure, one function to name it. Wire status
 * words (SW1SW2) are a separate type (uint16_t, see se05x.h): only the
 * emulator's dispatcher turns an ea_err into a status word, and only the host
 * transport turns a status word back. */
#ifndef EDGEAUTH_ERR_H
#define EDGEAUTH_ERR_H

#ifdef __cplusplus
extern "C" {
#endif

typedef enum ea_err {
    EA_OK = 0,
    EA_ERR_ARG,           /* NULL pointer or impossible length from the caller */
    EA_ERR_BUF_TOO_SMALL, /* *out_len now holds the size needed */
    EA_ERR_MALFORMED,     /* TLV, APDU or file did not parse */
    EA_ERR_AUTH,          /* MAC, cryptogram, tag or signature mismatch */
    EA_ERR_DENIED,        /* object policy forbids it */
    EA_ERR_NOT_FOUND,     /* no such object / file / entry */
    EA_ERR_EXISTS,        /* already exists */
    EA_ERR_CONDITIONS,    /* conditions of use not satisfied (wrong length, wrong type...) */
    EA_ERR_WRONG_DATA,    /* a parameter value is out of range */
    EA_ERR_FULL,          /* no room left (memory, file length) */
    EA_ERR_UNSUPPORTED,   /* valid request we do not implement */
    EA_ERR_CORRUPT,       /* stored data failed authentication */
    EA_ERR_LOCKED,        /* resource held by another process */
    EA_ERR_NO_MEMORY,
    EA_ERR_IO,            /* file or socket error */
    EA_ERR_TIMEOUT,
    EA_ERR_CRYPTO,        /* the crypto library failed */
    EA_ERR_INTERNAL,
    EA_ERR_CARD,          /* the secure element answered an unexpected status word */
    EA_ERR_POLICY,        /* an object policy that cannot be applied */
    EA_ERR_COUNT_         /* keep last */
} ea_err;

/* A short, constant English description. Never NULL. */
const char *ea_err_str(ea_err e);

#ifdef __cplusplus
}
#endif
#endif
