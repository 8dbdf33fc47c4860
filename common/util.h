/* Internal: small helpers shared by every component (hex, wipe, files). */
#ifndef EA_COMMON_UTIL_H
#define EA_COMMON_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "edgeauth/err.h"

/* Write a one-line reason into err (capacity n); NULL or n == 0: no-op. */
__attribute__((format(printf, 3, 4))) void ea_seterr(char *err, size_t n, const char *fmt, ...);

/* poll(fds, n, 0) repeatedly, yielding the CPU in between, for at most
 * ns nanoseconds: the first non-zero poll result, or 0 when nothing
 * became ready. For request/answer links whose answer usually comes
 * within microseconds, where sleeping in poll() and being woken would
 * cost as much again. */
struct pollfd;
int ea_spin_poll(struct pollfd *fds, unsigned long n, long ns);

/* Wipe a secret; never optimised away (OPENSSL_cleanse). */
void ea_cleanse(void *p, size_t n);

/* Hex text to bytes. Whitespace is skipped. On entry *out_len is the
 * capacity; on EA_OK the number of bytes written. Odd digit count or a
 * non-hex character: EA_ERR_MALFORMED. */
ea_err ea_hex_decode(const char *hex, uint8_t *out, size_t *out_len);
/* Bytes to lower-case hex; out must hold 2*n+1 chars. */
void ea_hex_encode(const uint8_t *in, size_t n, char *out);

static inline void ea_put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}
static inline uint32_t ea_get_be32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}
static inline void ea_put_be64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        p[i] = (uint8_t)v;
        v >>= 8;
    }
}
static inline uint64_t ea_get_be64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = (v << 8) | p[i];
    return v;
}

/* Read a whole file (at most max bytes). *out is malloc'd; free with free()
 * (or ea_cleanse first for secrets). */
ea_err ea_file_read(const char *path, size_t max, uint8_t **out, size_t *out_len);
/* Write a file atomically: temp file in the same directory, fsync, rename,
 * fsync the directory. mode is the file's permission (e.g. 0600). */
ea_err ea_file_write_atomic(const char *path, const void *data, size_t len, unsigned mode);
/* fsync a directory. */
ea_err ea_fsync_dir(const char *dir);
/* mkdir -p with the given mode for created levels. */
ea_err ea_mkdir_p(const char *path, unsigned mode);

#endif
