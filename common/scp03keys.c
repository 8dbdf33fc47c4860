/* Platform SCP03 static keys: the published defaults of the SE05x variants
 * (spec se05x-apdu.md §7.2) and the Plug&Trust key-file format. */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "common/scp03.h"
#include "common/util.h"

typedef struct default_keys {
    const char *name;
    const char *enc, *mac, *dek;
} default_keys;

/* NXP publishes these (AN12436 / AN12973) so that development boards can be
 * used out of the box; a chip that keeps them has no secret channel. */
static const default_keys defaults[] = {
    { "SE050A1", "34AE0967E329E9518E7265D5ADCC01C2", "52B253CADF472BDB3D0FB38E09770099",
      "ACC91431FE26811B5ECBC845620D8344" },
    { "SE050A2", "46A9C48C34EFE344A522E66744F8996A", "1203FF61DFBC9C86196A2274AEF4ED28",
      "F7561C6F48336119EE39439AAB34098E" },
    { "SE050B1", "D499BC90DEA542CF78D25E13D64CBB1F", "0815559643FB79EB8501A0DC833D901F",
      "BE7DDFB406E81AE4E9665A9FED64267C" },
    { "SE050B2", "5FA43D8202D25E9A85B1FE7E2D26478D", "105CEA2219F52BD167A07463C69379C3",
      "D7028157F2AD372C74BE969BCC390627" },
    { "SE050C1", "852B5962E9CCE5D0BE746B833BCC6287", "DB0AA319A408696C8E107AB4E3C26B47",
      "4C2F75C6A278A4AEE5C9AF7C50EEA80C" },
    { "SE050C2", "BD1DE20A81EAB2BF3B709A9D69A31254", "9A761B8DBA6BEDF22741E45D8D4236F5",
      "9B993B600F1C64F5ADC063192A96C947" },
    { "SE050DEVKIT", "35C256458958A34F6136155F8209D6CD", "AF177D5DBDF7C0D5C10A05B9F1607F78",
      "A1BC8438BF77935B361A4425FE79FA29" },
    { "SE051A2", "840A5D51795511C9CEF0C96FD2CBF041", "646BC2B8C3A4D9C1FA8D7116BE04FDFE",
      "03E6699ACA9426D9C38922F8914CE5F7" },
    { "SE051C2", "88DBCD65820D2AA06FFAB92AA8E79364", "A8644E2A04D9E9C8C0EA6086682999E5",
      "8A38723899881844E2C1513DACD9F80D" },
    { "SE050F2", "9188DA8CF369CFA9A00891627B65345A", "CB20F809C7A03932BC203B0A01816C81",
      "278E619D83518E14C6F1E4FA968BE51C" },
    { "SE050E", "D2DB63E7A0A5AED72A6460C4DFDCAF64", "738D5B798ED241B0B24768514BFBA95B",
      "6702DAC30942B2C85E7F47B42CED4E7F" },
    { "A5000", "C9118500B5FFA1433A50226F489A0AA5", "29D2FE28F7FEEB153068BE381F61BC01",
      "6124D38402118060ED910360FC5A4278" },
    { "SE052", "3AE441C747E32EBC16B3BB2D843C6DD8", "6C18F3D08FEE1CB96A3C8DE5D3538AAA",
      "B0E6A5697DBD929243A482CF9E4D6522" },
};

#define DEFAULT_PREFIX "default:"
#define KEYFILE_MAX 4096u

const char *ea_scp03_default_names(void)
{
    return "SE050A1 SE050A2 SE050B1 SE050B2 SE050C1 SE050C2 SE050DEVKIT SE051A2 SE051C2 "
           "SE050F2 SE050E A5000 SE052";
}

static ea_err hex16(const char *hex, uint8_t out[16])
{
    size_t n = EA_SCP03_KEY_LEN;
    if (strlen(hex) != 2 * EA_SCP03_KEY_LEN || ea_hex_decode(hex, out, &n) != EA_OK ||
        n != EA_SCP03_KEY_LEN)
        return EA_ERR_MALFORMED;
    return EA_OK;
}

static ea_err load_default(const char *name, ea_scp03_keys *out, char *err, size_t errlen)
{
    for (size_t i = 0; i < sizeof defaults / sizeof defaults[0]; i++) {
        if (strcasecmp(defaults[i].name, name) != 0)
            continue;
        if (hex16(defaults[i].enc, out->enc) != EA_OK || hex16(defaults[i].mac, out->mac) != EA_OK ||
            hex16(defaults[i].dek, out->dek) != EA_OK)
            return EA_ERR_INTERNAL;
        return EA_OK;
    }
    ea_seterr(err, errlen, "unknown SE05x variant \"%s\" (known: %s)", name, ea_scp03_default_names());
    return EA_ERR_NOT_FOUND;
}

/* Parse "ENC <hex>\nMAC <hex>\nDEK <hex>\n" (any order, '#' comments and
 * blank lines allowed, DEK optional as Plug&Trust allows). */
static ea_err parse_keyfile(const char *path, char *text, ea_scp03_keys *out, char *err,
                            size_t errlen)
{
    bool have_enc = false, have_mac = false, have_dek = false;
    unsigned lineno = 0;
    char *save = NULL;

    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        lineno++;
        size_t len = strlen(line);
        while (len > 0 && isspace((unsigned char)line[len - 1]))
            line[--len] = '\0';
        while (isspace((unsigned char)*line))
            line++;
        if (*line == '\0' || *line == '#')
            continue;
        char name[4] = "";
        const char *v = line;
        size_t i = 0;
        while (*v && !isspace((unsigned char)*v) && i < 3)
            name[i++] = (char)toupper((unsigned char)*v++);
        name[i] = '\0';
        if (!isspace((unsigned char)*v)) {
            ea_seterr(err, errlen, "%s line %u: expected \"ENC|MAC|DEK <32 hex digits>\"", path, lineno);
            return EA_ERR_MALFORMED;
        }
        while (isspace((unsigned char)*v))
            v++;
        uint8_t *dst;
        bool *have;
        if (!strcmp(name, "ENC"))
            dst = out->enc, have = &have_enc;
        else if (!strcmp(name, "MAC"))
            dst = out->mac, have = &have_mac;
        else if (!strcmp(name, "DEK"))
            dst = out->dek, have = &have_dek;
        else {
            ea_seterr(err, errlen, "%s line %u: unknown key name (ENC, MAC or DEK)", path, lineno);
            return EA_ERR_MALFORMED;
        }
        if (*have) {
            ea_seterr(err, errlen, "%s line %u: %s given twice", path, lineno, name);
            return EA_ERR_MALFORMED;
        }
        if (hex16(v, dst) != EA_OK) {
            ea_seterr(err, errlen, "%s line %u: %s must be 32 hex digits (an AES-128 key)", path,
                   lineno, name);
            return EA_ERR_MALFORMED;
        }
        *have = true;
    }
    if (!have_enc || !have_mac) {
        ea_seterr(err, errlen, "%s: ENC and MAC keys are required", path);
        return EA_ERR_MALFORMED;
    }
    return EA_OK;
}

ea_err ea_scp03_keys_load(const char *spec, ea_scp03_keys *out, char *err, size_t errlen)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    struct stat st;
    ea_err rc;

    if (!spec || !out)
        return EA_ERR_ARG;
    memset(out, 0, sizeof *out);
    if (!strncmp(spec, DEFAULT_PREFIX, strlen(DEFAULT_PREFIX)))
        return load_default(spec + strlen(DEFAULT_PREFIX), out, err, errlen);
    if (stat(spec, &st) != 0) {
        ea_seterr(err, errlen, "SCP03 key file %s: %s", spec, strerror(errno));
        return EA_ERR_NOT_FOUND;
    }
    /* Like ssh with its private keys: a key file others can read is refused. */
    if (st.st_mode & 077) {
        ea_seterr(err, errlen, "SCP03 key file %s is accessible by others (mode %03o); chmod 600 it",
               spec, (unsigned)(st.st_mode & 0777));
        return EA_ERR_DENIED;
    }
    if ((rc = ea_file_read(spec, KEYFILE_MAX, &buf, &len)) != EA_OK) {
        ea_seterr(err, errlen, "cannot read SCP03 key file %s: %s", spec, ea_err_str(rc));
        return rc;
    }
    char text[KEYFILE_MAX + 1];
    memcpy(text, buf, len);
    text[len] = '\0';
    ea_cleanse(buf, len);
    free(buf);
    if (strlen(text) != len) {
        ea_seterr(err, errlen, "%s: not a text file", spec);
        rc = EA_ERR_MALFORMED;
    } else {
        rc = parse_keyfile(spec, text, out, err, errlen);
    }
    ea_cleanse(text, sizeof text);
    if (rc != EA_OK)
        ea_scp03_keys_wipe(out);
    return rc;
}

ea_err ea_scp03_keys_format(const ea_scp03_keys *k, char *out, size_t cap)
{
    char e[33], m[33], d[33];
    if (!k || !out)
        return EA_ERR_ARG;
    ea_hex_encode(k->enc, 16, e);
    ea_hex_encode(k->mac, 16, m);
    ea_hex_encode(k->dek, 16, d);
    int n = snprintf(out, cap, "ENC %s\nMAC %s\nDEK %s\n", e, m, d);
    ea_cleanse(e, sizeof e);
    ea_cleanse(m, sizeof m);
    ea_cleanse(d, sizeof d);
    if (n < 0 || (size_t)n >= cap) {
        ea_cleanse(out, cap);
        return EA_ERR_BUF_TOO_SMALL;
    }
    return EA_OK;
}

void ea_scp03_keys_wipe(ea_scp03_keys *k)
{
    if (k)
        ea_cleanse(k, sizeof *k);
}
