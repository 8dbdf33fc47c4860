/* edgeauth — SE05x IoT applet protocol constants (applet 7.2 and 3.x).
 *
 * Byte values from ../shared/spec/se05x-apdu.md §1. Shared by the emulator
 * (card side) and the host library (host side), so both speak one dialect. */
#ifndef EDGEAUTH_SE05X_H
#define EDGEAUTH_SE05X_H

#include <stdint.h>

/* Class bytes */
#define EA_CLA_ISO 0x00u
#define EA_CLA_APPLET 0x80u
#define EA_CLA_SCP_MASK 0x04u

/* Instructions (low 5 bits) and modifiers */
#define EA_INS_WRITE 0x01u
#define EA_INS_READ 0x02u
#define EA_INS_CRYPTO 0x03u
#define EA_INS_MGMT 0x04u
#define EA_INS_PROCESS 0x05u
#define EA_INS_SELECT 0xA4u
#define EA_INS_MASK_TRANSIENT 0x80u
#define EA_INS_MASK_AUTH_OBJECT 0x40u
#define EA_INS_MASK_ATTEST 0x20u

/* P1 */
#define EA_P1_DEFAULT 0x00u
#define EA_P1_EC 0x01u
#define EA_P1_RSA 0x02u
#define EA_P1_AES 0x03u
#define EA_P1_DES 0x04u
#define EA_P1_HMAC 0x05u
#define EA_P1_BINARY 0x06u
#define EA_P1_USERID 0x07u
#define EA_P1_CURVE 0x0Bu
#define EA_P1_SIGNATURE 0x0Cu
#define EA_P1_MAC 0x0Du
#define EA_P1_CIPHER 0x0Eu
#define EA_P1_TLS 0x0Fu
#define EA_P1_KEY_PAIR 0x60u
#define EA_P1_PRIVATE 0x40u
#define EA_P1_PUBLIC 0x20u
#define EA_P1_KEYPART_MASK 0x60u

/* P2 */
#define EA_P2_DEFAULT 0x00u
#define EA_P2_CREATE 0x04u
#define EA_P2_SIZE 0x07u
#define EA_P2_SIGN 0x09u
#define EA_P2_VERIFY 0x0Au
#define EA_P2_ONESHOT 0x0Eu
#define EA_P2_DH 0x0Fu
#define EA_P2_SESSION_CREATE 0x1Bu
#define EA_P2_SESSION_CLOSE 0x1Cu
#define EA_P2_SESSION_USERID 0x2Cu
#define EA_P2_VERSION 0x20u
#define EA_P2_VERSION_EXT 0x21u
#define EA_P2_MEMORY 0x22u
#define EA_P2_LIST 0x25u
#define EA_P2_TYPE 0x26u
#define EA_P2_EXIST 0x27u
#define EA_P2_DELETE_OBJECT 0x28u
#define EA_P2_DELETE_ALL 0x2Au
#define EA_P2_HKDF 0x2Du
#define EA_P2_HKDF_EXPAND_ONLY 0x2Fu
#define EA_P2_ID 0x36u
#define EA_P2_ENCRYPT_ONESHOT 0x37u
#define EA_P2_DECRYPT_ONESHOT 0x38u
#define EA_P2_TIME 0x3Du
#define EA_P2_PARAM 0x40u
#define EA_P2_GENERATE_ONESHOT 0x45u
#define EA_P2_VALIDATE_ONESHOT 0x46u
#define EA_P2_RANDOM 0x49u
#define EA_P2_TLS_PMS 0x4Au
#define EA_P2_TLS_PRF_CLI_HELLO 0x4Bu
#define EA_P2_TLS_PRF_SRV_HELLO 0x4Cu
#define EA_P2_TLS_PRF_CLI_RND 0x4Du
#define EA_P2_TLS_PRF_SRV_RND 0x4Eu
#define EA_P2_SCP 0x52u
#define EA_P2_TLS_PRF_BOTH 0x5Au

/* Tags */
#define EA_TAG_SESSION_ID 0x10u
#define EA_TAG_POLICY 0x11u
#define EA_TAG_MAX_ATTEMPTS 0x12u
#define EA_TAG_1 0x41u
#define EA_TAG_2 0x42u
#define EA_TAG_3 0x43u
#define EA_TAG_4 0x44u
#define EA_TAG_5 0x45u
#define EA_TAG_6 0x46u
#define EA_TAG_7 0x47u
#define EA_TAG_8 0x48u
#define EA_TAG_9 0x49u
#define EA_TAG_10 0x4Au
#define EA_TAG_11 0x4Bu
#define EA_TAG_TIMESTAMP 0x4Fu
#define EA_TAG_SIGNATURE 0x52u

/* Status words */
#define EA_SW_OK 0x9000u
#define EA_SW_CONDITIONS_NOT_SATISFIED 0x6985u
#define EA_SW_COMMAND_NOT_ALLOWED 0x6986u
#define EA_SW_SECURITY_STATUS 0x6982u
#define EA_SW_DATA_INVALID 0x6984u
#define EA_SW_WRONG_DATA 0x6A80u
#define EA_SW_FILE_FULL 0x6A84u
#define EA_SW_WRONG_LENGTH 0x6700u
#define EA_SW_FILE_NOT_FOUND 0x6A82u
#define EA_SW_INCORRECT_P1P2 0x6A86u
#define EA_SW_INS_NOT_SUPPORTED 0x6D00u
#define EA_SW_CLA_NOT_SUPPORTED 0x6E00u
#define EA_SW_AUTH_FAILED 0x6300u
#define EA_SW_UNKNOWN 0x6F00u

/* EC curve ids */
#define EA_CURVE_NONE 0x00u
#define EA_CURVE_NIST_P256 0x03u
#define EA_CURVE_NIST_P384 0x04u

/* ECSignatureAlgo */
#define EA_SIG_ECDSA_SHA1 0x11u
#define EA_SIG_ECDSA_SHA224 0x25u
#define EA_SIG_ECDSA_SHA256 0x21u
#define EA_SIG_ECDSA_SHA384 0x22u
#define EA_SIG_ECDSA_SHA512 0x26u

/* DigestMode */
#define EA_DIGEST_NONE 0x00u
#define EA_DIGEST_SHA1 0x01u
#define EA_DIGEST_SHA224 0x07u
#define EA_DIGEST_SHA256 0x04u
#define EA_DIGEST_SHA384 0x05u
#define EA_DIGEST_SHA512 0x06u

/* MACAlgo */
#define EA_MAC_HMAC_SHA1 0x18u
#define EA_MAC_HMAC_SHA256 0x19u
#define EA_MAC_HMAC_SHA384 0x1Au
#define EA_MAC_HMAC_SHA512 0x1Bu
#define EA_MAC_CMAC_128 0x31u

/* CipherMode (AES subset) */
#define EA_CIPHER_AES_ECB_NOPAD 0x0Eu
#define EA_CIPHER_AES_CBC_NOPAD 0x0Du
#define EA_CIPHER_AES_CTR 0xF0u

/* Small enums */
#define EA_RESULT_SUCCESS 0x01u
#define EA_RESULT_FAILURE 0x02u
#define EA_MORE_NO 0x01u
#define EA_MORE_YES 0x02u
#define EA_SET_NOT 0x01u
#define EA_SET_YES 0x02u
#define EA_PERSISTENT 0x01u
#define EA_TRANSIENT 0x02u
#define EA_MEM_PERSISTENT 0x01u
#define EA_MEM_TRANSIENT_RESET 0x02u
#define EA_MEM_TRANSIENT_DESELECT 0x03u
#define EA_ORIGIN_EXTERNAL 0x01u
#define EA_ORIGIN_INTERNAL 0x02u
#define EA_ORIGIN_PROVISIONED 0x03u
#define EA_SCP_REQUIRED 0x01u
#define EA_SCP_NOT_REQUIRED 0x02u

/* SecureObjectType, applet 7.2 codes */
#define EA_TYPE_EC_P256_PAIR 0x29u
#define EA_TYPE_EC_P256_PRIV 0x2Au
#define EA_TYPE_EC_P256_PUB 0x2Bu
#define EA_TYPE_EC_P384_PAIR 0x2Du
#define EA_TYPE_EC_P384_PRIV 0x2Eu
#define EA_TYPE_EC_P384_PUB 0x2Fu
#define EA_TYPE_AES 0x09u
#define EA_TYPE_DES 0x0Au
#define EA_TYPE_BINARY 0x0Bu
#define EA_TYPE_USERID 0x0Cu
#define EA_TYPE_COUNTER 0x0Du
#define EA_TYPE_PCR 0x0Fu
#define EA_TYPE_CURVE 0x10u
#define EA_TYPE_HMAC 0x11u
/* applet 3.x generic EC codes */
#define EA_TYPE3_EC_PAIR 0x01u
#define EA_TYPE3_EC_PRIV 0x02u
#define EA_TYPE3_EC_PUB 0x03u

/* Object policy access-rule bits (4-byte AR header) */
#define EA_POL_ALLOW_TLS_KDF 0x80000000u
#define EA_POL_ALLOW_TLS_PMS 0x40000000u
#define EA_POL_FORBID_ALL 0x20000000u
#define EA_POL_ALLOW_SIGN 0x10000000u
#define EA_POL_ALLOW_VERIFY 0x08000000u
#define EA_POL_ALLOW_KA 0x04000000u
#define EA_POL_ALLOW_ENC 0x02000000u
#define EA_POL_ALLOW_DEC 0x01000000u
#define EA_POL_ALLOW_HKDF 0x00800000u
#define EA_POL_ALLOW_WRAP 0x00400000u
#define EA_POL_ALLOW_READ 0x00200000u
#define EA_POL_ALLOW_WRITE 0x00100000u
#define EA_POL_ALLOW_GEN 0x00080000u
#define EA_POL_ALLOW_DELETE 0x00040000u
#define EA_POL_REQUIRE_SM 0x00020000u
#define EA_POL_REQUIRE_PCR 0x00010000u
#define EA_POL_ALLOW_ATTESTATION 0x00008000u
#define EA_POL_ALLOW_IMPORT_EXPORT 0x00001000u
#define EA_POL_FORBID_DERIVED_OUTPUT 0x00000800u
#define EA_POL_ALLOW_KDF_EXT_RANDOM 0x00000400u

/* Reserved and well-known object ids */
#define EA_OBJ_UNIQUE_ID 0x7FFF0206u
#define EA_OBJ_FACTORY_RESET 0x7FFF0205u
#define EA_OBJ_ATTEST_KEY 0xF0000012u
#define EA_OBJ_ATTEST_CERT 0xF0000013u
#define EA_OBJ_DEVICE_KEY 0xF0000100u
#define EA_OBJ_DEVICE_CERT 0xF0000101u
#define EA_OBJ_OEM_INTERMEDIATE 0x7B000101u
#define EA_OBJ_OEM_ROOT 0x7B000102u

#define EA_UNIQUE_ID_LEN 18u
#define EA_TIMESTAMP_LEN 12u
#define EA_FRESHNESS_LEN 16u

/* The applet AID (16 bytes; SELECT matches any prefix of at least 5 bytes). */
#define EA_APPLET_AID_LEN 16u
extern const uint8_t ea_applet_aid[EA_APPLET_AID_LEN];

/* The command's name (AN12413: "ECDSASign", "TLSPerformPRF", ...; "SELECT",
 * "INITIALIZE-UPDATE", "EXTERNAL-AUTHENTICATE"; "unknown"), from its header
 * alone, for logs that must not carry data. */
const char *ea_se05x_cmd_name(uint8_t cla, uint8_t ins, uint8_t p1, uint8_t p2);

#endif
