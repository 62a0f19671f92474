/* opdash_chapters: the chapter file of a demo.
 *
 *   # a comment
 *   subject: ratelimiter            optional, before the first chapter
 *
 *   chapter: Counter drift          starts a chapter; its title
 *   do: chaos inject counter_drift key=drift ttl=30s
 *                                   a control command sent on entering (as opsend
 *                                   would send it), up to CHAP_MAX_DO
 *   wait: ticket_resolved|ticket_escalated invariant=counter_drift entity=$target
 *                                   the chapter runs until an event of one of these
 *                                   types whose fields (top level, else data.*)
 *                                   match arrives; $target is the target of the
 *                                   fault this chapter injected
 *   auto: yes                       advance by itself when the wait is over
 *   timeout: 120s                   give up waiting after this long
 *   Any other line is narration. A blank line starts a paragraph; a line
 *   starting with "- " starts a new line.
 *
 * Directives are recognised only at the start of a line. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clients/opdash.h"
#include "common/jsonutil.h"
#include "common/util.h"

#define CHAP_FILE_MAX (256 * 1024) /* bytes of a chapter file */

static char *
chap_trim(char *s)
{
	while (isspace((unsigned char)*s))
		s++;
	size_t n = strlen(s);
	while (n > 0 && isspace((unsigned char)s[n - 1]))
		s[--n] = '\0';
	return s;
}

/* "key:" at the start of the line: the value after it, else NULL. */
static char *
chap_directive(char *line, const char *key)
{
	size_t n = strlen(key);

	if (strncmp(line, key, n) != 0 || line[n] != ':')
		return NULL;
	return chap_trim(line + n + 1);
}

static int
chap_parse_wait(char *v, struct chap_match *m, char *err, size_t errlen)
{
	char *save = NULL, *tok = strtok_r(v, " \t", &save);

	memset(m, 0, sizeof(*m));
	if (tok == NULL) {
		snprintf(err, errlen, "wait: needs an event type");
		return -1;
	}
	if (strlen(tok) >= sizeof(m->types)) {
		snprintf(err, errlen, "wait: event types too long");
		return -1;
	}
	op_strlcpy(m->types, tok, sizeof(m->types));
	while ((tok = strtok_r(NULL, " \t", &save)) != NULL) {
		char *eq = strchr(tok, '=');
		if (eq == NULL || eq == tok) {
			snprintf(err, errlen, "wait: \"%s\" is not key=value", tok);
			return -1;
		}
		if (m->nfilters == CHAP_MAX_FILTERS) {
			snprintf(err, errlen, "wait: more than %d filters", CHAP_MAX_FILTERS);
			return -1;
		}
		*eq = '\0';
		if (strlen(tok) >= sizeof(m->key[0]) || strlen(eq + 1) >= sizeof(m->val[0])) {
			snprintf(err, errlen, "wait: filter \"%s\" too long", tok);
			return -1;
		}
		op_strlcpy(m->key[m->nfilters], tok, sizeof(m->key[0]));
		op_strlcpy(m->val[m->nfilters], eq + 1, sizeof(m->val[0]));
		m->nfilters++;
	}
	return 0;
}

static int
chap_add_narration(struct chap *c, const char *line, int *para)
{
	size_t n = strlen(c->narration);
	const char *sep = n == 0 ? "" : *para ? "\n\n" : (line[0] == '-' && line[1] == ' ') ? "\n" : " ";

	*para = 0;
	if (n + strlen(sep) + strlen(line) + 1 > sizeof(c->narration))
		return -1;
	strcat(c->narration, sep);
	strcat(c->narration, line);
	return 0;
}

int
chap_parse(const char *text, struct chap_book *b, char *err, size_t errlen)
{
	char *copy = strdup(text), *raw, e[200];
	struct chap *c = NULL;
	int lineno = 0, para = 0, rc = -1;

	memset(b, 0, sizeof(*b));
	if (copy == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	/* strsep keeps empty lines (paragraph breaks), strtok would not */
	char *rest = copy;
	while ((raw = strsep(&rest, "\n")) != NULL) {
		char *v, *line = raw;
		lineno++;
		size_t n = strlen(line);
		if (n > 0 && line[n - 1] == '\r')
			line[n - 1] = '\0';
		if (line[0] == '#')
			continue;
		if ((v = chap_directive(line, "chapter")) != NULL) {
			if (b->n == CHAP_MAX) {
				snprintf(e, sizeof(e), "more than %d chapters", CHAP_MAX);
				goto bad;
			}
			if (*v == '\0') {
				snprintf(e, sizeof(e), "chapter: needs a title");
				goto bad;
			}
			c = &b->c[b->n++];
			op_strlcpy(c->title, v, sizeof(c->title));
			c->timeout_ms = CHAP_DEFAULT_TIMEOUT_MS;
			para = 0;
			continue;
		}
		if ((v = chap_directive(line, "subject")) != NULL) {
			if (c != NULL) {
				snprintf(e, sizeof(e), "subject: belongs before the first chapter");
				goto bad;
			}
			op_strlcpy(b->subject, v, sizeof(b->subject));
			continue;
		}
		char *t = chap_trim(line);
		if (c == NULL) {
			if (*t == '\0')
				continue;
			snprintf(e, sizeof(e), "\"%.40s\" before the first \"chapter:\"", t);
			goto bad;
		}
		if ((v = chap_directive(line, "do")) != NULL) {
			if (c->ndo == CHAP_MAX_DO) {
				snprintf(e, sizeof(e), "more than %d do: lines in one chapter", CHAP_MAX_DO);
				goto bad;
			}
			if (*v == '\0' || strlen(v) >= sizeof(c->do_cmd[0])) {
				snprintf(e, sizeof(e), "do: needs a control command (under %zu bytes)",
				    sizeof(c->do_cmd[0]));
				goto bad;
			}
			op_strlcpy(c->do_cmd[c->ndo++], v, sizeof(c->do_cmd[0]));
		} else if ((v = chap_directive(line, "wait")) != NULL) {
			if (c->has_wait) {
				snprintf(e, sizeof(e), "one wait: per chapter");
				goto bad;
			}
			if (chap_parse_wait(v, &c->wait, e, sizeof(e)) != 0)
				goto bad;
			c->has_wait = 1;
		} else if ((v = chap_directive(line, "auto")) != NULL) {
			if (strcmp(v, "yes") && strcmp(v, "no")) {
				snprintf(e, sizeof(e), "auto: takes yes or no, not \"%s\"", v);
				goto bad;
			}
			c->auto_advance = strcmp(v, "yes") == 0;
		} else if ((v = chap_directive(line, "timeout")) != NULL) {
			if (op_parse_duration(v, &c->timeout_ms) != 0 || c->timeout_ms <= 0) {
				snprintf(e, sizeof(e), "timeout: \"%s\" is not a duration like 90s", v);
				goto bad;
			}
		} else if (*t == '\0') {
			para = c->narration[0] != '\0';
		} else if (chap_add_narration(c, t, &para) != 0) {
			snprintf(e, sizeof(e), "narration of \"%s\" is over %d bytes", c->title,
			    CHAP_NARRATION);
			goto bad;
		}
	}
	if (b->n == 0) {
		snprintf(err, errlen, "no \"chapter:\" line");
		goto out;
	}
	rc = 0;
	goto out;
bad:
	snprintf(err, errlen, "line %d: %s", lineno, e);
out:
	free(copy);
	return rc;
}

int
chap_load(const char *path, struct chap_book *b, char *err, size_t errlen)
{
	FILE *f = fopen(path, "r");
	char *buf, e[256];
	size_t n;

	if (f == NULL) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	buf = malloc(CHAP_FILE_MAX + 1);
	if (buf == NULL) {
		fclose(f);
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	n = fread(buf, 1, CHAP_FILE_MAX + 1, f);
	fclose(f);
	if (n > CHAP_FILE_MAX) {
		free(buf);
		snprintf(err, errlen, "%s: over %d bytes", path, CHAP_FILE_MAX);
		return -1;
	}
	buf[n] = '\0';
	int rc = chap_parse(buf, b, e, sizeof(e));
	free(buf);
	if (rc != 0)
		snprintf(err, errlen, "%s: %s", path, e);
	return rc;
}

/* A field's value as text: top level first, then data.*. */
static int
chap_field(json_object *ev, const char *key, char *buf, size_t len)
{
	json_object *v = NULL;

	if (!json_object_object_get_ex(ev, key, &v) || v == NULL) {
		json_object *data = op_json_obj(ev, "data");
		if (data == NULL || !json_object_object_get_ex(data, key, &v) || v == NULL)
			return -1;
	}
	snprintf(buf, len, "%s", json_object_get_string(v));
	return 0;
}

int
chap_event_matches(const struct chap_match *m, json_object *ev, const char *target)
{
	const char *type = op_json_str(ev, "type", "");
	size_t tl = strlen(type);
	const char *p = m->types;
	int type_ok = 0;
	char buf[256];

	while (*p && !type_ok) {
		const char *bar = strchr(p, '|');
		size_t n = bar ? (size_t)(bar - p) : strlen(p);
		type_ok = n == tl && strncmp(p, type, n) == 0;
		p += n + (bar ? 1 : 0);
	}
	if (!type_ok)
		return 0;
	for (int i = 0; i < m->nfilters; i++) {
		const char *want = m->val[i];
		if (strcmp(want, "$target") == 0)
			want = target ? target : "";
		if (chap_field(ev, m->key[i], buf, sizeof(buf)) != 0 || strcmp(buf, want) != 0)
			return 0;
	}
	return 1;
}

void
chap_match_describe(const struct chap_match *m, char *buf, size_t len)
{
	size_t n = (size_t)snprintf(buf, len, "%s", m->types);

	for (int i = 0; i < m->nfilters && n < len; i++)
		n += (size_t)snprintf(buf + n, len - n, " %s=%s", m->key[i], m->val[i]);
}

int
chap_split_cmd(const char *line, char *cmd, size_t cmdlen, json_object **args, char *err,
    size_t errlen)
{
	char word[256];
	size_t wl = 0;
	int have = 0, nwords = 0;
	char quote = 0;

	*args = json_object_new_array();
	cmd[0] = '\0';
	for (const char *p = line;; p++) {
		char ch = *p;
		int end = ch == '\0' || (!quote && isspace((unsigned char)ch));
		if (end) {
			if (have) {
				word[wl] = '\0';
				if (nwords++ == 0)
					op_strlcpy(cmd, word, cmdlen);
				else
					json_object_array_add(*args, json_object_new_string(word));
			}
			wl = 0;
			have = 0;
			if (ch == '\0')
				break;
			continue;
		}
		if (quote && ch == quote) {
			quote = 0;
			continue;
		}
		if (!quote && (ch == '"' || ch == '\'')) {
			quote = ch;
			have = 1;
			continue;
		}
		if (wl + 1 >= sizeof(word)) {
			snprintf(err, errlen, "a word of \"%s\" is too long", line);
			goto bad;
		}
		word[wl++] = ch;
		have = 1;
	}
	if (quote) {
		snprintf(err, errlen, "unclosed %c in \"%s\"", quote, line);
		goto bad;
	}
	if (nwords == 0) {
		snprintf(err, errlen, "empty command");
		goto bad;
	}
	return 0;
bad:
	json_object_put(*args);
	*args = NULL;
	return -1;
}
