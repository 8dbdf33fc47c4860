/* Helpers shared by the tests: temp chips, hex APDUs, vector files. */
#ifndef EA_TESTUTIL_H
#define EA_TESTUTIL_H

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <json-c/json.h>

#include "edgeauth/emu.h"
#include "edgeauth/err.h"

/* A fresh temporary directory (mkdtemp under $TMPDIR or /tmp); the caller
 * owns the string and removes it with tu_rmrf(). */
char *tu_tmpdir(const char *tag);
void tu_rmrf(const char *path);

/* Parse hex (spaces allowed) into a malloc'd buffer; aborts the test on bad hex. */
uint8_t *tu_hex(const char *hex, size_t *len);

/* A chip in a new temp dir, opened, with one channel. */
typedef struct tu_chip {
    char *dir;
    ea_emu *emu;
    ea_emu_chan *ch;
} tu_chip;
void tu_chip_new(tu_chip *c, int preprovision);
/* Close and reopen the chip (channel too): what a restart does. */
void tu_chip_reopen(tu_chip *c);
void tu_chip_free(tu_chip *c);

/* Send an APDU; returns the SW, copies the data part (without SW) to
 * out/out_len when out is not NULL (capacity in *out_len). */
uint16_t tu_xfer(ea_emu_chan *ch, const uint8_t *apdu, size_t len, uint8_t *out, size_t *out_len);
/* Same, APDU given as hex text. */
uint16_t tu_xfer_hex(ea_emu_chan *ch, const char *hex, uint8_t *out, size_t *out_len);
/* SELECT the applet; asserts 9000. */
void tu_select(ea_emu_chan *ch);

/* Build an APDU: header + body, with a short Lc when body < 256, else
 * extended (00 LH LL). le_ext appends 00 00 Le. Returns length. */
size_t tu_apdu(uint8_t *out, size_t cap, uint8_t cla, uint8_t ins, uint8_t p1, uint8_t p2,
               const uint8_t *body, size_t body_len, int le_ext);

/* The shared vectors directory ($EDGEAUTH_VECTORS or ../shared/vectors),
 * or NULL when absent (tests then skip with the reason printed). */
const char *tu_vectors_dir(void);
/* Load a JSON file below the vectors dir; NULL (and a printed reason) if absent. */
json_object *tu_vectors_json(const char *relpath);
/* Hex string field of a json object into a malloc'd buffer. */
uint8_t *tu_json_hex(json_object *obj, const char *key, size_t *len);

/* Path of a built program (build/bin/NAME). */
const char *tu_bin(const char *name, char *buf, size_t cap);

#endif
