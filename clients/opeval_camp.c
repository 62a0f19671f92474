/* opeval_camp: campaign files. One directive a line, '#' starts a comment:
 *
 *   name ratelimiter-all
 *   subject ratelimiter
 *   trials 20
 *   settle 5s        # no violation this long before each trial
 *   cooldown 15s     # after the previous trial's tickets closed
 *   ready 3m         # a subject not healthy by then: trial not_started
 *   timeout 2m       # injection -> verdict
 *   fault counter_drift key=drift ttl=20s
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "clients/opeval.h"
#include "common/util.h"

static int
camp_duration(const char *v, int64_t *out, const char *path, int line, char *err, size_t errlen)
{
	if (v == NULL || op_parse_duration(v, out) != 0 || *out < 0) {
		snprintf(err, errlen, "%s:%d: expected a duration such as 15s, got \"%s\"", path, line,
		    v ? v : "");
		return -1;
	}
	return 0;
}

static int
camp_line(struct eval_campaign *c, char *s, const char *path, int line, char *err, size_t errlen)
{
	char *save = NULL, *word = strtok_r(s, " \t", &save), *v;

	if (word == NULL)
		return 0;
	if (strcmp(word, "fault") == 0) {
		struct eval_fault *f;
		if (c->nfaults == EVAL_MAX_FAULTS) {
			snprintf(err, errlen, "%s:%d: more than %d faults", path, line, EVAL_MAX_FAULTS);
			return -1;
		}
		if ((v = strtok_r(NULL, " \t", &save)) == NULL) {
			snprintf(err, errlen, "%s:%d: fault needs a name", path, line);
			return -1;
		}
		f = &c->faults[c->nfaults++];
		op_strlcpy(f->name, v, sizeof(f->name));
		while ((v = strtok_r(NULL, " \t", &save)) != NULL) {
			if (strchr(v, '=') == NULL || v[0] == '=' || f->nparams == EVAL_MAX_PARAMS ||
			    strlen(v) >= sizeof(f->params[0])) {
				snprintf(err, errlen, "%s:%d: \"%s\": expected at most %d key=value", path,
				    line, v, EVAL_MAX_PARAMS);
				return -1;
			}
			op_strlcpy(f->params[f->nparams++], v, sizeof(f->params[0]));
		}
		return 0;
	}
	v = strtok_r(NULL, " \t", &save);
	if (v != NULL && strtok_r(NULL, " \t", &save) != NULL) {
		snprintf(err, errlen, "%s:%d: %s takes one value", path, line, word);
		return -1;
	}
	if (strcmp(word, "name") == 0 && v) {
		op_strlcpy(c->name, v, sizeof(c->name));
	} else if (strcmp(word, "subject") == 0 && v) {
		op_strlcpy(c->subject, v, sizeof(c->subject));
	} else if (strcmp(word, "trials") == 0) {
		int64_t n;
		if (v == NULL || op_parse_int(v, 1, 10000, &n) != 0) {
			snprintf(err, errlen, "%s:%d: trials: expected 1..10000", path, line);
			return -1;
		}
		c->trials = (int)n;
	} else if (strcmp(word, "settle") == 0) {
		return camp_duration(v, &c->settle_ms, path, line, err, errlen);
	} else if (strcmp(word, "cooldown") == 0) {
		return camp_duration(v, &c->cooldown_ms, path, line, err, errlen);
	} else if (strcmp(word, "ready") == 0) {
		return camp_duration(v, &c->ready_ms, path, line, err, errlen);
	} else if (strcmp(word, "timeout") == 0) {
		return camp_duration(v, &c->timeout_ms, path, line, err, errlen);
	} else {
		snprintf(err, errlen, "%s:%d: unknown directive \"%s\" (name, subject, trials, settle, "
		    "cooldown, ready, timeout, fault)", path, line, word);
		return -1;
	}
	return 0;
}

int
eval_campaign_load(const char *path, struct eval_campaign *c, char *err, size_t errlen)
{
	FILE *f = fopen(path, "r");
	char buf[1024];
	int line = 0;

	memset(c, 0, sizeof(*c));
	c->trials = EVAL_DEF_TRIALS;
	c->settle_ms = EVAL_DEF_SETTLE_MS;
	c->cooldown_ms = EVAL_DEF_COOLDOWN_MS;
	c->ready_ms = EVAL_DEF_READY_MS;
	c->timeout_ms = EVAL_DEF_TIMEOUT_MS;
	if (f == NULL) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	while (fgets(buf, sizeof(buf), f) != NULL) {
		line++;
		char *hash = strchr(buf, '#');
		if (hash)
			*hash = '\0';
		buf[strcspn(buf, "\r\n")] = '\0';
		if (camp_line(c, buf, path, line, err, errlen) != 0) {
			fclose(f);
			return -1;
		}
	}
	fclose(f);
	if (c->subject[0] == '\0' || c->nfaults == 0) {
		snprintf(err, errlen, "%s: a campaign needs a subject and at least one fault", path);
		return -1;
	}
	if (c->name[0] == '\0')
		op_strlcpy(c->name, c->subject, sizeof(c->name));
	return 0;
}
