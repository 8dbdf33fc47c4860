/* Identities and the topic jail (see jail.h). */
#include "cloud/jail.h"

#include <string.h>

bool ea_jail_id_ok(const char *id, size_t len)
{
    if (!id || len == 0 || len > EA_JAIL_ID_MAX || strnlen(id, len + 1) != len || id[0] == '$')
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)id[i];
        /* Control bytes, space, DEL and non-ASCII are refused: an identity
         * is compared byte for byte, so look-alikes must not exist. */
        if (c < 0x21 || c > 0x7E || c == '+' || c == '#' || c == '/')
            return false;
    }
    return true;
}

/* Does s start with "devices/<id>", followed by the end or by '/'?
 * *rest points after the prefix. */
static bool in_jail(const char *id, const char *s, const char **rest)
{
    size_t root = sizeof EA_JAIL_ROOT - 1, n;

    if (!id || !s || strncmp(s, EA_JAIL_ROOT, root) != 0)
        return false;
    n = strlen(id);
    if (n == 0 || strncmp(s + root, id, n) != 0)
        return false;
    *rest = s + root + n;
    return **rest == '\0' || **rest == '/';
}

bool ea_jail_topic_ok(const char *id, const char *topic)
{
    const char *rest;

    /* A topic name never holds wildcards; the broker refuses such a
     * PUBLISH before asking us, but a name with one is never in a jail. */
    return in_jail(id, topic, &rest) && !strpbrk(topic, "+#") && ea_jail_id_ok(id, strlen(id));
}

bool ea_jail_filter_ok(const char *id, const char *filter)
{
    const char *rest;

    /* The prefix matched literally ("devices/" + the id, which cannot hold
     * a wildcard), so whatever wildcards follow stay below it. */
    return in_jail(id, filter, &rest) && ea_jail_id_ok(id, strlen(id));
}

bool ea_jail_backend_ok(const char *topic_or_filter)
{
    size_t root = sizeof EA_JAIL_ROOT - 1;
    return topic_or_filter && strncmp(topic_or_filter, EA_JAIL_ROOT, root) == 0;
}
