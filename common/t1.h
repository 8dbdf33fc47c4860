/* Internal: the T=1 over I2C block codec, UM11225 flavour (spec
 * se05x-apdu.md §6.1). Shared by the host engine (host/t1.c) and the card
 * side of the emulator (emu/t1_card.c), so both build and check the same
 * bytes.
 *
 * A block is NAD PCB LEN INF(LEN) CRC(2):
 *   NAD  5A host -> SE, A5 SE -> host
 *   PCB  I-block 0 N(S) M 0 0000   (N(S) = 0x40, M = 0x20)
 *        R-block 1 0 0 N(R) 00 EE  (N(R) = 0x10, EE 00 ok / 01 CRC / 10 other / 11 SOF)
 *        S-block 1 1 R ttttt       (R = 0x20: response; t = EA_T1_S_*)
 *   LEN  0..254 (IFSC of the SE05x ATR)
 *   CRC  CRC-16/X.25 over NAD..INF, least significant byte first.
 *
 * ---------------------------------------------------------------------------
 * t1-tcp: I2C transactions carried over a TCP stream
 * ---------------------------------------------------------------------------
 * "t1-tcp://HOST:PORT" lets the T=1 engine run end to end over a socket. One
 * TCP connection is one I2C bus with one SE on it (one emulator channel);
 * connecting is a power-up, disconnecting a power-down. The stream carries
 * I2C transactions, not T=1 blocks, so address NACKs, polling, partial block
 * reads, R-NACK/resend and WTX all happen on the wire as they would on a bus.
 * Messages from the host (one at a time; the SE answers each before the next
 * is read):
 *
 *   57 LH LL <LEN bytes>   'W': one I2C write transaction of LEN bytes
 *                          (0..EA_T1_TCP_XFER_MAX). Answer: 1 byte,
 *                          00 = ACK, 01 = NACK (the SE did not take the
 *                          write: busy, or longer than its receive buffer).
 *   52 NH NL               'R': one I2C read transaction of N bytes
 *                          (1..EA_T1_TCP_XFER_MAX). Answer: 00 followed by
 *                          exactly N bytes, or the single byte 01 = NACK on
 *                          address (the SE has nothing to send, or is busy).
 *
 * Lengths are big-endian. A read of more bytes than the SE has pending
 * returns the pending bytes followed by FF filler (an undriven bus reads
 * high), as a real I2C target would; a read of fewer leaves the rest pending
 * for the next read (how nano reads NAD+PCB, then LEN, then INF+CRC). Any
 * other message type, or a length out of range, is a protocol violation: the
 * SE side closes the connection. There is no authentication: like JRCP_v1,
 * listen on loopback only.
 * ---------------------------------------------------------------------------
 */
#ifndef EA_COMMON_T1_H
#define EA_COMMON_T1_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "edgeauth/err.h"

#define EA_T1_NAD_HOST 0x5Au /* host -> SE */
#define EA_T1_NAD_SE 0xA5u   /* SE -> host */

#define EA_T1_HDR_LEN 3u   /* NAD PCB LEN */
#define EA_T1_CRC_LEN 2u
#define EA_T1_INF_MAX 254u /* IFSC / IFSD */
#define EA_T1_FRAME_MAX (EA_T1_HDR_LEN + EA_T1_INF_MAX + EA_T1_CRC_LEN) /* 259 */

/* PCB bits */
#define EA_T1_PCB_I_NS 0x40u
#define EA_T1_PCB_I_M 0x20u
#define EA_T1_PCB_R 0x80u
#define EA_T1_PCB_R_NR 0x10u
#define EA_T1_PCB_S 0xC0u
#define EA_T1_PCB_S_RESP 0x20u

/* R-block error codes (EE) */
#define EA_T1_R_OK 0x00u
#define EA_T1_R_CRC 0x01u   /* CRC or parity error */
#define EA_T1_R_OTHER 0x02u /* any other error */
#define EA_T1_R_SOF 0x03u   /* SOF missed / undefined (nano) */

/* S-block types (UM11225 table 10) */
#define EA_T1_S_RESYNC 0x00u
#define EA_T1_S_IFS 0x01u
#define EA_T1_S_ABORT 0x02u
#define EA_T1_S_WTX 0x03u
#define EA_T1_S_END_SESSION 0x05u /* End of APDU session (proprietary) */
#define EA_T1_S_CHIP_RESET 0x06u
#define EA_T1_S_GET_ATR 0x07u
#define EA_T1_S_SOFT_RESET 0x0Fu /* interface soft reset, answers the ATR */
#define EA_T1_S_DEEP_PD 0x1Fu    /* deep power down */

/* Timing defaults of the SE05x ATR (spec §6.1, §9.2). */
#define EA_T1_DEFAULT_BWT_MS 1000u
#define EA_T1_DEFAULT_MPOT_MS 1u
#define EA_T1_DEFAULT_SEGT_US 100u

/* t1-tcp message types and answers (see above). */
#define EA_T1_TCP_WRITE 0x57u /* 'W' */
#define EA_T1_TCP_READ 0x52u  /* 'R' */
#define EA_T1_TCP_ACK 0x00u
#define EA_T1_TCP_NACK 0x01u
#define EA_T1_TCP_XFER_MAX 512u /* nano's largest raw read (MAX_APDU_BUFFER) */
#define EA_T1_TCP_HDR 3u        /* type + 2-byte length */

typedef enum ea_t1_kind { EA_T1_I, EA_T1_R, EA_T1_S } ea_t1_kind;

/* One parsed block. inf points into the parsed buffer. */
typedef struct ea_t1_block {
    uint8_t nad, pcb;
    ea_t1_kind kind;
    uint8_t ns;    /* I: N(S), 0 or 1 */
    bool more;     /* I: M (chaining) */
    uint8_t nr;    /* R: N(R), 0 or 1 */
    uint8_t err;   /* R: EE, EA_T1_R_* */
    uint8_t stype; /* S: type, EA_T1_S_* */
    bool resp;     /* S: response (else request) */
    const uint8_t *inf;
    size_t len;
} ea_t1_block;

/* CRC-16/X.25 (poly 0x1021 reflected, init FFFF, xorout FFFF). The value
 * goes on the wire low byte first. */
uint16_t ea_t1_crc(const uint8_t *p, size_t n);

static inline uint8_t ea_t1_pcb_i(unsigned ns, bool more)
{
    return (uint8_t)((ns & 1u ? EA_T1_PCB_I_NS : 0u) | (more ? EA_T1_PCB_I_M : 0u));
}
static inline uint8_t ea_t1_pcb_r(unsigned nr, unsigned err)
{
    return (uint8_t)(EA_T1_PCB_R | (nr & 1u ? EA_T1_PCB_R_NR : 0u) | (err & 3u));
}
static inline uint8_t ea_t1_pcb_s(unsigned type, bool resp)
{
    return (uint8_t)(EA_T1_PCB_S | (resp ? EA_T1_PCB_S_RESP : 0u) | (type & 0x1Fu));
}

/* Build NAD PCB LEN INF CRC into out (cap bytes). pcb must be a valid PCB
 * (as made by ea_t1_pcb_*; R-blocks carry no INF). *out_len is the frame
 * length on EA_OK. EA_ERR_ARG: bad NAD/PCB or len > EA_T1_INF_MAX;
 * EA_ERR_BUF_TOO_SMALL: cap < len + 5 (out untouched). */
ea_err ea_t1_build(uint8_t nad, uint8_t pcb, const uint8_t *inf, size_t len, uint8_t *out,
                   size_t cap, size_t *out_len);

/* Check a PCB byte: true for every coding of the table above (reserved bits
 * zero). */
bool ea_t1_pcb_valid(uint8_t pcb);

/* Parse exactly one block of n bytes, strictly:
 *   EA_ERR_MALFORMED  too short or too long for its LEN, LEN > 254, NAD not
 *                     nad, reserved PCB bits set, an R-block with INF, or an
 *                     S-block whose INF length does not fit its type;
 *   EA_ERR_CORRUPT    well formed but the CRC does not match (the receiver
 *                     answers R-NACK with EE = 01 rather than 10).
 * The structure is checked before the CRC, so a truncated block is always
 * MALFORMED. *b is written only on EA_OK. */
ea_err ea_t1_parse(const uint8_t *p, size_t n, uint8_t nad, ea_t1_block *b);

/* The INF length a known S-block type must carry, or -1 for "any" (ATR
 * responses) and -2 for an unknown type. */
int ea_t1_s_inf_len(uint8_t stype, bool resp);

/* Short name of a PCB for logs and error messages ("I(0,M)", "R(1,CRC)",
 * "S(WTX req)"). out needs 24 bytes. */
void ea_t1_pcb_name(uint8_t pcb, char *out, size_t cap);

#endif
