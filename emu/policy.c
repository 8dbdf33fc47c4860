/* Object policies (spec §1.6, §4.2): records of LEN AUTH_ID AR_HEADER [ext]. */
#include "common/util.h"
#include "emu/emu_int.h"

ea_err policy_validate(const uint8_t *p, size_t n)
{
    ea_cur c = ea_cur_make(p, n);

    if (n == 0 || n > EMU_POLICY_MAX)
        return EA_ERR_POLICY;
    while (c.n > 0) {
        uint8_t len;
        ea_cur rec;
        /* LEN counts the bytes after itself: auth id (4) + header (4) + ext. */
        if (!ea_cur_u8(&c, &len) || len < 8 || !ea_cur_take(&c, len, &rec))
            return EA_ERR_POLICY;
        uint32_t ar = ea_get_be32(rec.p + 4);
        /* Secure messaging and PCR bindings are not emulated: an object that
         * demands them could never be used (or deleted), so refuse it now. */
        if (ar & (EA_POL_REQUIRE_SM | EA_POL_REQUIRE_PCR))
            return EA_ERR_POLICY;
    }
    return EA_OK;
}

/* What an object may do when it was created without a policy. AN12413 does
 * not publish the exact default; ours allows every use and management
 * operation of the object's kind, never attestation, and a private or secret
 * value is unreadable whatever the policy says. */
uint32_t policy_default(const ea_obj *o)
{
    const uint32_t manage = EA_POL_ALLOW_READ | EA_POL_ALLOW_WRITE | EA_POL_ALLOW_DELETE;
    switch (o->kind) {
    case KIND_EC_PAIR:
    case KIND_EC_PRIV:
        return manage | EA_POL_ALLOW_SIGN | EA_POL_ALLOW_VERIFY | EA_POL_ALLOW_KA |
               EA_POL_ALLOW_GEN | EA_POL_ALLOW_TLS_PMS;
    case KIND_EC_PUB:
        return manage | EA_POL_ALLOW_VERIFY | EA_POL_ALLOW_KA;
    case KIND_AES:
        return manage | EA_POL_ALLOW_ENC | EA_POL_ALLOW_DEC | EA_POL_ALLOW_SIGN |
               EA_POL_ALLOW_VERIFY | EA_POL_ALLOW_WRAP;
    case KIND_HMAC:
        return manage | EA_POL_ALLOW_SIGN | EA_POL_ALLOW_VERIFY | EA_POL_ALLOW_HKDF |
               EA_POL_ALLOW_TLS_KDF | EA_POL_ALLOW_TLS_PMS | EA_POL_ALLOW_KDF_EXT_RANDOM;
    default:
        return manage;
    }
}

/* The access rules that apply without a session: the record for auth id 0
 * ("everyone"). An object with a policy but no such record allows nothing. */
static uint32_t rules(const ea_obj *o)
{
    if (!o->has_policy)
        return policy_default(o);
    ea_cur c = ea_cur_make(o->policy, o->policy_len);
    while (c.n > 0) {
        uint8_t len;
        ea_cur rec;
        if (!ea_cur_u8(&c, &len) || len < 8 || !ea_cur_take(&c, len, &rec))
            break;
        if (ea_get_be32(rec.p) == 0)
            return ea_get_be32(rec.p + 4);
    }
    return EA_POL_FORBID_ALL;
}

bool policy_forbids_output(const ea_obj *o)
{
    return (rules(o) & EA_POL_FORBID_DERIVED_OUTPUT) != 0;
}

ea_err policy_check(const ea_obj *o, uint32_t need)
{
    uint32_t ar = rules(o);
    if (ar & EA_POL_FORBID_ALL)
        return EA_ERR_DENIED;
    /* Secure messaging and PCR bindings are not emulated yet: an object that
     * demands them is refused rather than silently served in the clear. */
    if (ar & (EA_POL_REQUIRE_SM | EA_POL_REQUIRE_PCR))
        return EA_ERR_DENIED;
    if ((ar & need) != need)
        return EA_ERR_DENIED;
    return EA_OK;
}
