#include "common/config.h"

#include <ini.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/util.h"

struct cfg_entry {
	char *section, *key, *value;
	int line;
};

struct op_config {
	char *path;
	struct cfg_entry *v;
	size_t n, cap;
	char **sections;
	size_t nsec;
	char *err;
	size_t errlen;
};

static int
cfg_handler(void *arg, const char *section, const char *name, const char *value)
{
	struct op_config *c = arg;

	if (name == NULL) { /* inih reports a bare section this way (INI_CALL_HANDLER_ON_NEW_SECTION) */
		return 1;
	}
	int seen = 0;
	for (size_t i = 0; i < c->nsec; i++)
		if (strcmp(c->sections[i], section) == 0)
			seen = 1;
	if (!seen) {
		char **ns = realloc(c->sections, (c->nsec + 1) * sizeof(*ns));
		if (ns == NULL)
			return 0;
		c->sections = ns;
		c->sections[c->nsec++] = strdup(section);
	}
	/* A repeated key overrides the earlier one, as most INI readers do. */
	for (size_t i = 0; i < c->n; i++) {
		if (strcmp(c->v[i].section, section) == 0 && strcmp(c->v[i].key, name) == 0) {
			free(c->v[i].value);
			c->v[i].value = strdup(value);
			return 1;
		}
	}
	if (c->n == c->cap) {
		size_t cap = c->cap ? c->cap * 2 : 32;
		struct cfg_entry *nv = realloc(c->v, cap * sizeof(*nv));
		if (nv == NULL)
			return 0;
		c->v = nv;
		c->cap = cap;
	}
	c->v[c->n].section = strdup(section);
	c->v[c->n].key = strdup(name);
	c->v[c->n].value = strdup(value);
	c->n++;
	return 1;
}

static struct op_config *
cfg_new(const char *path)
{
	struct op_config *c = calloc(1, sizeof(*c));

	if (c != NULL)
		c->path = strdup(path ? path : "(string)");
	return c;
}

struct op_config *
op_config_load(const char *path, char *err, size_t errlen)
{
	struct op_config *c = cfg_new(path);
	int rc;

	if (c == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	rc = ini_parse(path, cfg_handler, c);
	if (rc == -1) {
		snprintf(err, errlen, "%s: cannot open", path);
	} else if (rc == -2) {
		snprintf(err, errlen, "%s: out of memory", path);
	} else if (rc > 0) {
		snprintf(err, errlen, "%s:%d: syntax error", path, rc);
	} else {
		return c;
	}
	op_config_free(c);
	return NULL;
}

struct op_config *
op_config_parse(const char *text, char *err, size_t errlen)
{
	struct op_config *c = cfg_new(NULL);
	int rc;

	if (c == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	rc = ini_parse_string(text, cfg_handler, c);
	if (rc == 0)
		return c;
	snprintf(err, errlen, "line %d: syntax error", rc);
	op_config_free(c);
	return NULL;
}

void
op_config_free(struct op_config *c)
{
	if (c == NULL)
		return;
	for (size_t i = 0; i < c->n; i++) {
		free(c->v[i].section);
		free(c->v[i].key);
		free(c->v[i].value);
	}
	for (size_t i = 0; i < c->nsec; i++)
		free(c->sections[i]);
	free(c->sections);
	free(c->v);
	free(c->path);
	free(c);
}

const char *
op_config_path(const struct op_config *c)
{
	return c->path;
}

const char *
op_config_get(const struct op_config *c, const char *section, const char *key)
{
	if (c == NULL)
		return NULL;
	for (size_t i = 0; i < c->n; i++)
		if (strcmp(c->v[i].section, section) == 0 && strcmp(c->v[i].key, key) == 0)
			return c->v[i].value;
	return NULL;
}

int
op_config_duration(const struct op_config *c, const char *section, const char *key,
    int64_t def_ms, int64_t *out, char *err, size_t errlen)
{
	const char *v = op_config_get(c, section, key);

	*out = def_ms;
	if (v == NULL)
		return 0;
	if (op_parse_duration(v, out) != 0) {
		snprintf(err, errlen, "[%s] %s: \"%s\" is not a duration (e.g. 500ms, 5s, 2m)",
		    section, key, v);
		return -1;
	}
	return 0;
}

int
op_config_int(const struct op_config *c, const char *section, const char *key, int64_t def,
    int64_t min, int64_t max, int64_t *out, char *err, size_t errlen)
{
	const char *v = op_config_get(c, section, key);

	*out = def;
	if (v == NULL)
		return 0;
	if (op_parse_int(v, min, max, out) != 0) {
		snprintf(err, errlen, "[%s] %s: \"%s\" is not an integer in %lld..%lld", section,
		    key, v, (long long)min, (long long)max);
		return -1;
	}
	return 0;
}

int
op_config_bool(const struct op_config *c, const char *section, const char *key, int def,
    int *out, char *err, size_t errlen)
{
	const char *v = op_config_get(c, section, key);

	*out = def;
	if (v == NULL)
		return 0;
	if (!strcasecmp(v, "true") || !strcasecmp(v, "yes") || !strcasecmp(v, "on") ||
	    !strcmp(v, "1"))
		*out = 1;
	else if (!strcasecmp(v, "false") || !strcasecmp(v, "no") || !strcasecmp(v, "off") ||
	    !strcmp(v, "0"))
		*out = 0;
	else {
		snprintf(err, errlen, "[%s] %s: \"%s\" is not a boolean (true/false)", section,
		    key, v);
		return -1;
	}
	return 0;
}

int
op_config_has_section(const struct op_config *c, const char *section)
{
	for (size_t i = 0; c != NULL && i < c->nsec; i++)
		if (strcmp(c->sections[i], section) == 0)
			return 1;
	return 0;
}

void
op_config_foreach(const struct op_config *c, const char *section,
    void (*fn)(const char *key, const char *value, void *arg), void *arg)
{
	for (size_t i = 0; c != NULL && i < c->n; i++)
		if (strcmp(c->v[i].section, section) == 0)
			fn(c->v[i].key, c->v[i].value, arg);
}

size_t
op_config_section_count(const struct op_config *c)
{
	return c ? c->nsec : 0;
}

const char *
op_config_section_name(const struct op_config *c, size_t i)
{
	return i < c->nsec ? c->sections[i] : NULL;
}
