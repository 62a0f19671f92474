/* ha_conf: the [ha] section.
 *
 *   [ha]
 *   etcd = http://127.0.0.1:2379,http://10.0.0.2:2379   ; required
 *   name = op-a            ; default: the host name; unique per instance
 *   cluster = prod         ; key prefix: /operatord/CLUSTER/...
 *   lease_ttl = 10s        ; whole seconds, 2s..300s
 *   subjects = a,b         ; the subjects it may lead (default all); the
 *                          ; others it only follows (who leads, which term) */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "common/config.h"
#include "common/util.h"
#include "supervisor/ha.h"

static const char *const ha_keys[] = { "etcd", "name", "cluster", "lease_ttl", "subjects" };

struct unknown_scan {
	char key[64];
};

static void
scan_key(const char *key, const char *value, void *arg)
{
	struct unknown_scan *u = arg;

	(void)value;
	for (size_t i = 0; i < OP_ARRAY_LEN(ha_keys); i++)
		if (strcmp(key, ha_keys[i]) == 0)
			return;
	if (u->key[0] == '\0')
		op_strlcpy(u->key, key, sizeof(u->key));
}

int
ha_config_load(const struct op_config *cfg, struct ha_config *out, char *err, size_t errlen)
{
	const char *v;
	char why[160];
	struct etcd_client c;

	memset(out, 0, sizeof(*out));
	if (!op_config_has_section(cfg, "ha"))
		return 0;
	out->enabled = 1;

	struct unknown_scan u = { "" };
	op_config_foreach(cfg, "ha", scan_key, &u);
	if (u.key[0] != '\0') {
		snprintf(err, errlen, "[ha] %s: unknown key (known: etcd, name, cluster, lease_ttl, "
		    "subjects)",
		    u.key);
		return -1;
	}

	v = op_config_get(cfg, "ha", "etcd");
	if (v == NULL || v[0] == '\0') {
		snprintf(err, errlen, "[ha] etcd: required (http://HOST:PORT[,...])");
		return -1;
	}
	if (etcd_client_init(&c, v, why, sizeof(why)) < 0) {
		snprintf(err, errlen, "[ha] etcd: %s", why);
		return -1;
	}
	op_strlcpy(out->etcd, v, sizeof(out->etcd));

	v = op_config_get(cfg, "ha", "name");
	if (v != NULL) {
		op_strlcpy(out->name, v, sizeof(out->name));
	} else if (gethostname(out->name, sizeof(out->name)) != 0) {
		snprintf(err, errlen, "[ha] name: not set and the host name cannot be read");
		return -1;
	}
	out->name[sizeof(out->name) - 1] = '\0';
	if (!etcd_segment_ok(out->name)) {
		snprintf(err, errlen, "[ha] name: \"%s\" must be 1-63 of [A-Za-z0-9._-]%s", out->name,
		    v == NULL ? " (it defaults to the host name; set it)" : "");
		return -1;
	}

	v = op_config_get(cfg, "ha", "cluster");
	op_strlcpy(out->cluster, v ? v : HA_DEFAULT_CLUSTER, sizeof(out->cluster));
	if (!etcd_segment_ok(out->cluster)) {
		snprintf(err, errlen, "[ha] cluster: \"%s\" must be 1-63 of [A-Za-z0-9._-]",
		    v ? v : "");
		return -1;
	}

	if (op_config_duration(cfg, "ha", "lease_ttl", HA_LEASE_TTL_MS, &out->lease_ttl_ms, err,
		errlen) != 0)
		return -1;
	if (out->lease_ttl_ms < HA_LEASE_TTL_MIN_MS || out->lease_ttl_ms > HA_LEASE_TTL_MAX_MS ||
	    out->lease_ttl_ms % 1000 != 0) {
		snprintf(err, errlen, "[ha] lease_ttl: must be whole seconds from %ds to %ds",
		    HA_LEASE_TTL_MIN_MS / 1000, HA_LEASE_TTL_MAX_MS / 1000);
		return -1;
	}
	v = op_config_get(cfg, "ha", "subjects");
	if (v != NULL) {
		if (strlen(v) >= sizeof(out->subjects)) {
			snprintf(err, errlen, "[ha] subjects: too long");
			return -1;
		}
		char list[sizeof(out->subjects)], *save = NULL;
		op_strlcpy(list, v, sizeof(list));
		for (char *s = strtok_r(list, ", ", &save); s; s = strtok_r(NULL, ", ", &save)) {
			char sec[HA_NAME_MAX + 16];
			snprintf(sec, sizeof(sec), "subject.%s", s);
			if (!op_config_has_section(cfg, sec)) {
				snprintf(err, errlen, "[ha] subjects: no [subject.%s] section", s);
				return -1;
			}
		}
		op_strlcpy(out->subjects, v, sizeof(out->subjects));
	}
	return 0;
}

int
ha_config_may_lead(const struct ha_config *cfg, const char *subject)
{
	char list[sizeof(cfg->subjects)], *save = NULL;

	if (cfg->subjects[0] == '\0')
		return 1;
	op_strlcpy(list, cfg->subjects, sizeof(list));
	for (char *s = strtok_r(list, ", ", &save); s; s = strtok_r(NULL, ", ", &save))
		if (strcmp(s, subject) == 0)
			return 1;
	return 0;
}

int
ha_key(char *out, size_t outlen, const char *cluster, const char *name)
{
	int n = snprintf(out, outlen, "/operatord/%s/%s", cluster, name);
	return n < 0 || (size_t)n >= outlen ? -1 : 0;
}

/* FNV-1a, 64 bits: a short, stable, key-safe name for a fingerprint. */
static uint64_t
ha_fnv1a(const char *s)
{
	uint64_t h = 14695981039346656037ULL;

	for (; *s; s++) {
		h ^= (unsigned char)*s;
		h *= 1099511628211ULL;
	}
	return h;
}

int
ha_ticket_key(char *out, size_t outlen, const char *cluster, const char *kind,
    const char *subject, const char *fingerprint)
{
	int n = snprintf(out, outlen, "/operatord/%s/%s/%s/%016llx", cluster, kind, subject,
	    (unsigned long long)ha_fnv1a(fingerprint));
	return n < 0 || (size_t)n >= outlen ? -1 : 0;
}

int
ha_decide_key(char *out, size_t outlen, const char *cluster, const char *leader,
    int64_t action_id)
{
	int n = snprintf(out, outlen, "/operatord/%s/decide/%s/%lld", cluster, leader,
	    (long long)action_id);
	return n < 0 || (size_t)n >= outlen ? -1 : 0;
}
