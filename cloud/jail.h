/* Identities and the per-device topic jail: pure functions, no broker
 * needed (unit-tested on their own, used by the plugin and the CLI).
 *
 * A device <id> may publish, subscribe and receive only on devices/<id>
 * and below. A backend identity (a cloud application, named in the plugin
 * options) may use everything below devices/, and nothing else. */
#ifndef EA_CLOUD_JAIL_H
#define EA_CLOUD_JAIL_H

#include <stdbool.h>
#include <stddef.h>

#define EA_JAIL_ID_MAX 64u
#define EA_JAIL_ROOT "devices/"

/* A usable identity: 1..64 bytes of printable ASCII (0x21..0x7E) without
 * the MQTT wildcards '+' and '#' and without the level separator '/', and
 * not starting with '$'. len is the identity's length as the certificate
 * states it, so an embedded NUL (strlen(id) != len) is refused too. */
bool ea_jail_id_ok(const char *id, size_t len);

/* May device id use the topic name (publish, or a message delivered to it)? */
bool ea_jail_topic_ok(const char *id, const char *topic);
/* May device id subscribe with this filter? Wildcards are allowed only
 * below devices/<id>/, so the filter can never match outside the jail. */
bool ea_jail_filter_ok(const char *id, const char *filter);
/* May a backend identity use this topic name or filter? */
bool ea_jail_backend_ok(const char *topic_or_filter);

#endif
