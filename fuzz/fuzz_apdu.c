#define _XOPEN_SOURCE 700
/* libFuzzer target: the emulator's APDU dispatcher. The input is one APDU,
 * or several when separated by the byte sequence FE FE FE FE, sent on one
 * channel after SELECT, so multi-command state (objects made by one APDU and
 * used by the next) is reached. Crashes, sanitizer reports and leaks fail. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ftw.h>
#include <sys/stat.h>

#include "edgeauth/emu.h"

static ea_emu *emu;
static char dir[] = "/tmp/edgeauth-fuzz-XXXXXX";

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

static void cleanup(void)
{
    ea_emu_close(emu);
    nftw(dir, rm_one, 8, FTW_DEPTH | FTW_PHYS);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    char err[256];
    (void)argc;
    (void)argv;
    if (!mkdtemp(dir) || ea_emu_init(dir, NULL, err, sizeof err) != EA_OK ||
        ea_emu_open(dir, NULL, &emu, err, sizeof err) != EA_OK) {
        fprintf(stderr, "fuzz_apdu: cannot make a chip in %s: %s\n", dir, err);
        abort();
    }
    atexit(cleanup);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const uint8_t select[] = { 0x00, 0xA4, 0x04, 0x00, 0x10, 0xA0, 0x00, 0x00, 0x03, 0x96, 0x54,
                                      0x53, 0x00, 0x00, 0x00, 0x01, 0x03, 0x00, 0x00, 0x00, 0x00, 0x00 };
    uint8_t r[EA_EMU_APDU_MAX];
    size_t rl = sizeof r;
    ea_emu_chan *ch;

    if (ea_emu_chan_open(emu, &ch) != EA_OK)
        abort();
    ea_emu_transceive(ch, select, sizeof select, r, &rl);
    size_t start = 0;
    for (size_t i = 0; i <= size; i++) {
        bool sep = i + 4 <= size && !memcmp(data + i, "\xFE\xFE\xFE\xFE", 4);
        if (i == size || sep) {
            rl = sizeof r;
            if (ea_emu_transceive(ch, data + start, i - start, r, &rl) != EA_OK || rl < 2 ||
                rl > sizeof r)
                abort();
            start = i + 4;
            i += 3;
        }
    }
    ea_emu_chan_close(ch);
    return 0;
}
