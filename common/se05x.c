#include <stddef.h>

#include "edgeauth/se05x.h"

const uint8_t ea_applet_aid[EA_APPLET_AID_LEN] = {
    0xA0, 0x00, 0x00, 0x03, 0x96, 0x54, 0x53, 0x00, 0x00, 0x00, 0x01, 0x03, 0x00, 0x00, 0x00, 0x00,
};

/* Command names for logs (AN12413's names). ins: low 5 bits; 0xFF = any
 * P1/P2. First match wins, so specific rows come before general ones. */
static const struct cmd_name {
    uint8_t ins, p1, p2;
    const char *name;
} cmd_names[] = {
    { EA_INS_CRYPTO, EA_P1_SIGNATURE, EA_P2_SIGN, "ECDSASign" },
    { EA_INS_CRYPTO, EA_P1_SIGNATURE, EA_P2_VERIFY, "ECDSAVerify" },
    { EA_INS_CRYPTO, EA_P1_EC, EA_P2_DH, "ECDHGenerateSharedSecret" },
    { EA_INS_CRYPTO, EA_P1_TLS, EA_P2_RANDOM, "TLSGenerateRandom" },
    { EA_INS_CRYPTO, EA_P1_TLS, EA_P2_TLS_PMS, "TLSCalculatePreMasterSecret" },
    { EA_INS_CRYPTO, EA_P1_TLS, 0xFF, "TLSPerformPRF" },
    { EA_INS_CRYPTO, EA_P1_DEFAULT, EA_P2_HKDF, "HKDF" },
    { EA_INS_CRYPTO, EA_P1_DEFAULT, EA_P2_HKDF_EXPAND_ONLY, "HKDFExpandOnly" },
    { EA_INS_CRYPTO, EA_P1_DEFAULT, EA_P2_ONESHOT, "DigestOneShot" },
    { EA_INS_CRYPTO, EA_P1_CIPHER, 0xFF, "CipherOneShot" },
    { EA_INS_CRYPTO, EA_P1_MAC, 0xFF, "MACOneShot" },
    { EA_INS_MGMT, EA_P1_DEFAULT, EA_P2_RANDOM, "GetRandom" },
    { EA_INS_MGMT, EA_P1_DEFAULT, EA_P2_VERSION, "GetVersion" },
    { EA_INS_MGMT, EA_P1_DEFAULT, EA_P2_VERSION_EXT, "GetVersion" },
    { EA_INS_MGMT, EA_P1_DEFAULT, EA_P2_MEMORY, "GetFreeMemory" },
    { EA_INS_MGMT, EA_P1_DEFAULT, EA_P2_TIME, "GetTimestamp" },
    { EA_INS_MGMT, EA_P1_DEFAULT, EA_P2_EXIST, "CheckObjectExists" },
    { EA_INS_MGMT, EA_P1_DEFAULT, EA_P2_DELETE_OBJECT, "DeleteSecureObject" },
    { EA_INS_MGMT, EA_P1_DEFAULT, EA_P2_DELETE_ALL, "DeleteAll" },
    { EA_INS_MGMT, EA_P1_DEFAULT, EA_P2_SCP, "SetPlatformSCPRequest" },
    { EA_INS_MGMT, EA_P1_CURVE, EA_P2_DELETE_OBJECT, "DeleteECCurve" },
    { EA_INS_READ, EA_P1_DEFAULT, EA_P2_DEFAULT, "ReadObject" },
    { EA_INS_READ, EA_P1_DEFAULT, EA_P2_TYPE, "ReadType" },
    { EA_INS_READ, EA_P1_DEFAULT, EA_P2_SIZE, "ReadSize" },
    { EA_INS_READ, EA_P1_DEFAULT, EA_P2_LIST, "ReadIDList" },
    { EA_INS_READ, EA_P1_CURVE, 0xFF, "ReadECCurve" },
    { EA_INS_WRITE, EA_P1_CURVE, 0xFF, "WriteECCurve" },
    { EA_INS_WRITE, EA_P1_AES, 0xFF, "WriteSymmKey" },
    { EA_INS_WRITE, EA_P1_HMAC, 0xFF, "WriteSymmKey" },
    { EA_INS_WRITE, EA_P1_BINARY, 0xFF, "WriteBinary" },
};

const char *ea_se05x_cmd_name(uint8_t cla, uint8_t ins, uint8_t p1, uint8_t p2)
{
    uint8_t gp = cla & (uint8_t)~EA_CLA_SCP_MASK;
    if (cla == EA_CLA_ISO && ins == EA_INS_SELECT)
        return "SELECT";
    if (gp == EA_CLA_APPLET && ins == 0x50)
        return "INITIALIZE-UPDATE";
    if (gp == EA_CLA_APPLET && ins == 0x82)
        return "EXTERNAL-AUTHENTICATE";
    uint8_t base = ins & 0x1F;
    if (base == EA_INS_WRITE && (p1 & ~EA_P1_KEYPART_MASK) == EA_P1_EC)
        return "WriteECKey";
    for (size_t i = 0; i < sizeof cmd_names / sizeof cmd_names[0]; i++) {
        const struct cmd_name *r = &cmd_names[i];
        if (r->ins == base && (r->p1 == 0xFF || r->p1 == p1) && (r->p2 == 0xFF || r->p2 == p2))
            return r->name;
    }
    return "unknown";
}
