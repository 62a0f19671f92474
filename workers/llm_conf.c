/* llm_conf: the [diagnoser] section and the API key. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/util.h"
#include "workers/llm.h"

#define LLM_KEY_MAX 4096

static const char *const llm_keys[] = {
	"backend", "model", "base_url", "api_key_env", "api_key_file", "timeout",
	"max_calls_per_hour", "require_approval_on_disagreement", "cache_ttl", "max_tokens",
};

const char *
llm_backend_name(enum llm_backend b)
{
	switch (b) {
	case LLM_ANTHROPIC: return "anthropic";
	case LLM_OPENAI: return "openai";
	default: return "rules";
	}
}

struct unknown_key {
	char name[64];
};

static void
llm_conf_key_check(const char *key, const char *value, void *arg)
{
	struct unknown_key *u = arg;

	(void)value;
	if (u->name[0] != '\0')
		return;
	for (size_t i = 0; i < OP_ARRAY_LEN(llm_keys); i++)
		if (strcmp(llm_keys[i], key) == 0)
			return;
	op_strlcpy(u->name, key, sizeof(u->name));
}

static int
llm_env_name_ok(const char *s)
{
	if (*s == '\0' || (*s >= '0' && *s <= '9'))
		return 0;
	for (; *s; s++)
		if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') ||
		    (*s >= '0' && *s <= '9') || *s == '_'))
			return 0;
	return 1;
}

int
llm_conf_load(const struct op_config *cfg, struct llm_conf *c, char *err, size_t errlen)
{
	const char *v;
	struct unknown_key u = {{0}};

	memset(c, 0, sizeof(*c));
	c->backend = LLM_RULES;
	op_config_foreach(cfg, "diagnoser", llm_conf_key_check, &u);
	if (u.name[0] != '\0') {
		snprintf(err, errlen, "[diagnoser] %s: unknown key (backend, model, base_url, "
		    "api_key_env, api_key_file, timeout, max_calls_per_hour, "
		    "require_approval_on_disagreement, cache_ttl, max_tokens)", u.name);
		return -1;
	}
	v = op_config_get(cfg, "diagnoser", "backend");
	if (v == NULL || strcmp(v, "rules") == 0)
		c->backend = LLM_RULES;
	else if (strcmp(v, "anthropic") == 0)
		c->backend = LLM_ANTHROPIC;
	else if (strcmp(v, "openai") == 0)
		c->backend = LLM_OPENAI;
	else {
		snprintf(err, errlen, "[diagnoser] backend: \"%s\" is not one of rules, anthropic, "
		    "openai", v);
		return -1;
	}
	if (op_config_duration(cfg, "diagnoser", "timeout", LLM_DEFAULT_TIMEOUT_MS, &c->timeout_ms,
	    err, errlen) != 0)
		return -1;
	if (c->timeout_ms < 100 || c->timeout_ms > 600000) {
		snprintf(err, errlen, "[diagnoser] timeout: must be between 100ms and 10m");
		return -1;
	}
	c->connect_timeout_ms = c->timeout_ms < LLM_CONNECT_TIMEOUT_MS ? c->timeout_ms
	    : LLM_CONNECT_TIMEOUT_MS;
	if (op_config_int(cfg, "diagnoser", "max_calls_per_hour", LLM_DEFAULT_CALLS_PER_HOUR, 0,
	    100000, &c->max_calls_per_hour, err, errlen) != 0)
		return -1;
	if (op_config_bool(cfg, "diagnoser", "require_approval_on_disagreement", 1,
	    &c->require_approval_on_disagreement, err, errlen) != 0)
		return -1;
	if (op_config_duration(cfg, "diagnoser", "cache_ttl", LLM_DEFAULT_CACHE_TTL_MS,
	    &c->cache_ttl_ms, err, errlen) != 0)
		return -1;
	if (op_config_int(cfg, "diagnoser", "max_tokens", LLM_DEFAULT_MAX_TOKENS, 256, 65536,
	    &c->max_tokens, err, errlen) != 0)
		return -1;

	v = op_config_get(cfg, "diagnoser", "model");
	if (v == NULL || *v == '\0') {
		if (c->backend == LLM_ANTHROPIC)
			v = "claude-sonnet-4-5";
		else if (c->backend == LLM_OPENAI) {
			snprintf(err, errlen, "[diagnoser] model: required with backend = openai "
			    "(the model name your server serves)");
			return -1;
		} else
			v = "";
	}
	if (strlen(v) >= sizeof(c->model) || strpbrk(v, "\r\n\"") != NULL) {
		snprintf(err, errlen, "[diagnoser] model: not a model name");
		return -1;
	}
	op_strlcpy(c->model, v, sizeof(c->model));

	v = op_config_get(cfg, "diagnoser", "base_url");
	if (v == NULL || *v == '\0')
		v = c->backend == LLM_OPENAI ? "https://api.openai.com" : "https://api.anthropic.com";
	if ((strncmp(v, "http://", 7) != 0 && strncmp(v, "https://", 8) != 0) ||
	    strlen(v) >= sizeof(c->base_url) - 32 || strpbrk(v, " \t\r\n") != NULL) {
		snprintf(err, errlen, "[diagnoser] base_url: \"%s\" is not an http:// or https:// URL", v);
		return -1;
	}
	op_strlcpy(c->base_url, v, sizeof(c->base_url));
	/* The paths below are {base_url}/v1/...: accept a base_url given with /v1 too. */
	size_t n = strlen(c->base_url);
	while (n > 0 && c->base_url[n - 1] == '/')
		c->base_url[--n] = '\0';
	if (n >= 3 && strcmp(c->base_url + n - 3, "/v1") == 0)
		c->base_url[n - 3] = '\0';

	const char *env = op_config_get(cfg, "diagnoser", "api_key_env");
	const char *file = op_config_get(cfg, "diagnoser", "api_key_file");
	if (env != NULL && *env != '\0' && file != NULL && *file != '\0') {
		snprintf(err, errlen, "[diagnoser] api_key_env and api_key_file: give one, not both");
		return -1;
	}
	if (env != NULL && *env != '\0') {
		if (!llm_env_name_ok(env) || strlen(env) >= sizeof(c->key_env)) {
			snprintf(err, errlen, "[diagnoser] api_key_env: \"%s\" is not an environment "
			    "variable name", env);
			return -1;
		}
		op_strlcpy(c->key_env, env, sizeof(c->key_env));
	}
	if (file != NULL && *file != '\0') {
		if (file[0] != '/' || strlen(file) >= sizeof(c->key_file)) {
			snprintf(err, errlen, "[diagnoser] api_key_file: must be an absolute path");
			return -1;
		}
		op_strlcpy(c->key_file, file, sizeof(c->key_file));
	}
	if (c->backend == LLM_ANTHROPIC && c->key_env[0] == '\0' && c->key_file[0] == '\0') {
		snprintf(err, errlen, "[diagnoser] api_key_env or api_key_file: required with "
		    "backend = anthropic");
		return -1;
	}
	if (c->backend != LLM_RULES) {
		/* A key that cannot be read is a configuration error now, not a 401 later. */
		char *key = NULL;
		int rc = llm_key_load(c, &key, err, errlen);
		if (key != NULL) {
			explicit_bzero(key, strlen(key));
			free(key);
		}
		if (rc != 0)
			return -1;
	}
	return 0;
}

static int
llm_key_ok(const char *k, const char *where, char *err, size_t errlen)
{
	if (*k == '\0') {
		snprintf(err, errlen, "%s: the API key is empty", where);
		return -1;
	}
	for (const unsigned char *p = (const unsigned char *)k; *p; p++)
		if (*p < 0x21 || *p == 0x7f) {
			snprintf(err, errlen, "%s: the API key contains a space or control character",
			    where);
			return -1;
		}
	return 0;
}

int
llm_key_load(const struct llm_conf *c, char **key, char *err, size_t errlen)
{
	char where[PATH_MAX + 64];

	*key = NULL;
	if (c->key_env[0] != '\0') {
		const char *v = getenv(c->key_env);
		snprintf(where, sizeof(where), "[diagnoser] api_key_env %s", c->key_env);
		if (v == NULL) {
			snprintf(err, errlen, "%s: the variable is not set", where);
			return -1;
		}
		if (llm_key_ok(v, where, err, errlen) != 0)
			return -1;
		if ((*key = strdup(v)) == NULL) {
			snprintf(err, errlen, "out of memory");
			return -1;
		}
		return 0;
	}
	if (c->key_file[0] == '\0')
		return 0;
	snprintf(where, sizeof(where), "[diagnoser] api_key_file %s", c->key_file);
	int fd = open(c->key_file, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	struct stat st;
	if (fd < 0) {
		snprintf(err, errlen, "%s: %s", where, strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		snprintf(err, errlen, "%s: not a regular file", where);
		close(fd);
		return -1;
	}
	if ((st.st_mode & 077) != 0) {
		snprintf(err, errlen, "%s: mode %04o lets others read the key; it must be 0600 "
		    "(chmod 600 %s)", where, (unsigned)(st.st_mode & 07777), c->key_file);
		close(fd);
		return -1;
	}
	char *buf = calloc(1, LLM_KEY_MAX + 1);
	ssize_t n = 0, r;
	while (buf != NULL && n < LLM_KEY_MAX && (r = read(fd, buf + n, LLM_KEY_MAX - n)) != 0) {
		if (r < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		n += r;
	}
	close(fd);
	if (buf == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	/* One line; trailing newline and spaces are not part of the key. */
	buf[n] = '\0';
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' ' ||
	    buf[n - 1] == '\t'))
		buf[--n] = '\0';
	if (llm_key_ok(buf, where, err, errlen) != 0) {
		explicit_bzero(buf, LLM_KEY_MAX);
		free(buf);
		return -1;
	}
	*key = buf;
	return 0;
}

void
llm_scrub(char *s, const char *key)
{
	size_t kl;
	char *p;

	if (s == NULL || key == NULL || (kl = strlen(key)) < 4)
		return;
	while ((p = strstr(s, key)) != NULL) {
		/* Same length, so the string never grows: "[redacted]" padded or cut. */
		static const char mark[] = "[redacted]";
		for (size_t i = 0; i < kl; i++)
			p[i] = i < sizeof(mark) - 1 ? mark[i] : '*';
		if (kl < sizeof(mark) - 1)
			p[kl - 1] = ']';
	}
}
