/* rl_actions: the rate limiter's action catalogue, its preconditions and its
 * execution. Every action goes through a node's management API (never
 * straight into Redis), and is answered with the figures the node returned. */
#include "subjects/ratelimiter/rl_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/jsonutil.h"
#include "common/util.h"

#define RL_LIMIT_MAX 1000000000      /* largest limit update_limit may set, requests */

static const struct op_param_def rl_p_reset[] = {
	{"key", OP_PARAM_STRING, 1, RL_KEYNAME_MAX, 1, "rate-limit key whose counter is reset"},
};

static const struct op_param_def rl_p_limit[] = {
	{"key", OP_PARAM_STRING, 1, RL_KEYNAME_MAX, 1, "rate-limit key"},
	{"limit", OP_PARAM_INT, 0, RL_LIMIT_MAX, 1, "requests per window; 0 blocks the key"},
};

static const struct op_param_def rl_p_resync[] = {
	{"node", OP_PARAM_STRING, 1, RL_ID_MAX - 1, 1,
	    "node id (as in /health) or a configured node URL"},
};

/* What each action may remedy and what it acts on (a plan must fit its
 * ticket): a key-level action acts on the ticket's key, a node action on a
 * node the ticket's evidence names (its per_node figures). */
static const char *const rl_rem_reset[] = {RL_INV_DRIFT, NULL};
static const char *const rl_rem_limit[] = {RL_INV_GHOST, NULL};
static const char *const rl_rem_resync[] = {RL_INV_GHOST, RL_INV_OVER, NULL};
static const char *const rl_ent_key[] = {"key", NULL};
static const char *const rl_ent_node[] = {"node", NULL};

static int rl_revert_limit(struct op_subject *s, json_object *undo, json_object **result,
    char *err, size_t errlen);

const struct op_action_def rl_actions[RL_NACTIONS] = {
	{"reset_counter", "medium", rl_p_reset, OP_ARRAY_LEN(rl_p_reset),
	    "POST /api/counters/{key}/reset: deletes the key's sliding window in Redis and every "
	    "node's accounting before the reset",
	    "Redis count and nodes' sum aligned (drift within tolerance)",
	    rl_rem_reset, rl_ent_key, OP_TOUCH_NONE, NULL, NULL, 1 /* the window is gone */, NULL},
	{"update_limit", "high", rl_p_limit, OP_ARRAY_LEN(rl_p_limit),
	    "PUT /api/limits/{key}: writes the key's limit in Redis and publishes the change to "
	    "every node",
	    "every node's cached limit equals the new limit",
	    rl_rem_limit, rl_ent_key, OP_TOUCH_NONE,
	    "the key's previous limit (or no explicit limit)", rl_revert_limit, 0, NULL},
	{"resync_node", "low", rl_p_resync, OP_ARRAY_LEN(rl_p_resync),
	    "POST /api/resync on one node: reloads its whole limits cache from Redis",
	    "the node's cached limits equal the authoritative limits",
	    /* reloading the authoritative limits leaves nothing to undo */
	    rl_rem_resync, rl_ent_node, OP_TOUCH_PARAM, NULL, NULL, 0, NULL},
};

/* ------------------------------------------------------------------ */
/* preconditions */

static size_t
rl_pre_reachable(json_object *obs)
{
	json_object *nodes = op_json_arr(obs, "nodes");
	size_t n = 0;

	for (size_t i = 0; nodes && i < json_object_array_length(nodes); i++)
		n += op_json_bool(json_object_array_get_idx(nodes, i), "reachable", 0);
	return n;
}

static void
rl_pre_known(json_object *obs, char *buf, size_t len)
{
	json_object *nodes = op_json_arr(obs, "nodes");

	buf[0] = '\0';
	for (size_t i = 0; nodes && i < json_object_array_length(nodes); i++) {
		size_t l = strlen(buf);
		snprintf(buf + l, len - l, "%s%s", l ? ", " : "",
		    op_json_str(json_object_array_get_idx(nodes, i), "id", "?"));
	}
}

int
rl_precheck(struct op_subject *s, const char *action, json_object *params, json_object *obs,
    char *why, size_t whylen)
{
	(void)s;
	if (obs == NULL) {
		snprintf(why, whylen, "no fresh observation of the rate limiter");
		return -1;
	}
	if (!op_json_bool(op_json_obj(obs, "redis"), "ok", 0)) {
		snprintf(why, whylen, "Redis is unreachable (%s): limits and counters cannot change",
		    op_json_str(op_json_obj(obs, "redis"), "error", "?"));
		return -1;
	}
	if (strcmp(action, "reset_counter") == 0 || strcmp(action, "update_limit") == 0) {
		if (rl_pre_reachable(obs) == 0) {
			snprintf(why, whylen, "no rate-limiter node is reachable");
			return -1;
		}
		return 0;
	}
	if (strcmp(action, "resync_node") == 0) {
		const char *node = op_json_str(params, "node", NULL);
		json_object *n = node ? rl_obs_node(obs, node) : NULL;
		if (n == NULL) {
			char known[512];
			rl_pre_known(obs, known, sizeof(known));
			snprintf(why, whylen, "unknown node \"%s\" (known: %s)", node ? node : "",
			    known);
			return -1;
		}
		if (!op_json_bool(n, "reachable", 0)) {
			snprintf(why, whylen, "node %s is unreachable (%s)", node,
			    op_json_str(n, "error", "?"));
			return -1;
		}
		return 0;
	}
	snprintf(why, whylen, "unknown action \"%s\"", action);
	return -1;
}

/* ------------------------------------------------------------------ */
/* execution */

/* Runs one management call and turns the answer into the action's result. */
static int
rl_exec_call(const char *method, const struct rl_probe *pr, const char *path, const char *body,
    json_object **result, char *err, size_t errlen)
{
	char url[RL_REQ_URL_MAX];
	long status;
	json_object *ans;

	snprintf(url, sizeof(url), "%s%s", pr->url, path);
	if (rl_http_json(method, url, body, RL_ACTION_TIMEOUT_MS, &status, &ans, err, errlen) != 0)
		return -1;
	json_object *r = json_object_new_object();
	op_json_set_str(r, "node", pr->id);
	op_json_set_str(r, "url", url);
	op_json_set_str(r, "method", method);
	op_json_set_int(r, "http_status", status);
	json_object_object_add(r, "response", ans);
	*result = r;
	if (status < 200 || status > 299) {
		snprintf(err, errlen, "%s %s: HTTP %ld: %s", method, url, status,
		    op_json_str(ans, "error", ans ? json_object_to_json_string(ans) : "no body"));
		return -1;
	}
	return 0;
}

static const struct rl_probe *
rl_exec_first(const struct rl_probe *pr, size_t n, char *err, size_t errlen)
{
	for (size_t i = 0; i < n; i++)
		if (pr[i].reachable)
			return &pr[i];
	snprintf(err, errlen, "no rate-limiter node is reachable (%s: %s)", n ? pr[0].url : "-",
	    n ? pr[0].err : "none configured");
	return NULL;
}

static int
rl_exec_key_path(const char *key, const char *fmt, char *path, size_t len, char *err,
    size_t errlen)
{
	char enc[3 * RL_KEYNAME_MAX + 1];

	if (key == NULL || rl_pct_encode(key, enc, sizeof(enc)) != 0) {
		snprintf(err, errlen, "invalid key");
		return -1;
	}
	snprintf(path, len, fmt, enc);
	return 0;
}

/* The key's limit as Redis has it now, from GET /api/limits on one node:
 * {"key", "limit": N} for an explicit limit, {"key", "limit": null} when the
 * key runs on the default (undo deletes the explicit limit). */
static json_object *
rl_undo_limit(const struct rl_probe *pr, const char *key, char *err, size_t errlen)
{
	char url[RL_REQ_URL_MAX];
	long status;
	json_object *ans, *undo, *limits;

	snprintf(url, sizeof(url), "%s/api/limits", pr->url);
	if (rl_http_json("GET", url, NULL, RL_ACTION_TIMEOUT_MS, &status, &ans, err, errlen) != 0)
		return NULL;
	if (status != 200 || (limits = op_json_arr(ans, "limits")) == NULL) {
		snprintf(err, errlen, "GET %s: HTTP %ld: cannot read the limit to restore on undo",
		    url, status);
		json_object_put(ans);
		return NULL;
	}
	undo = json_object_new_object();
	op_json_set_str(undo, "key", key);
	json_object_object_add(undo, "limit", NULL);
	for (size_t i = 0; i < json_object_array_length(limits); i++) {
		json_object *l = json_object_array_get_idx(limits, i);
		if (strcmp(op_json_str(l, "key", ""), key) == 0 && op_json_bool(l, "explicit", 0))
			op_json_set_int(undo, "limit", op_json_int(l, "limit", 0));
	}
	json_object_put(ans);
	return undo;
}

/* Undo of update_limit: puts the previous limit back, or deletes the
 * explicit limit the key did not have. */
static int
rl_revert_limit(struct op_subject *s, json_object *undo, json_object **result, char *err,
    size_t errlen)
{
	struct rl_priv *p = s->priv;
	struct rl_probe pr[RL_NODES_MAX];
	const struct rl_probe *target;
	char path[4 * RL_KEYNAME_MAX], body[64];
	const char *key = op_json_str(undo, "key", NULL);
	json_object *v;

	*result = NULL;
	rl_probe_nodes(p, pr);
	if ((target = rl_exec_first(pr, p->nnodes, err, errlen)) == NULL ||
	    rl_exec_key_path(key, "/api/limits/%s", path, sizeof(path), err, errlen) != 0)
		return -1;
	if (!json_object_object_get_ex(undo, "limit", &v) || v == NULL)
		return rl_exec_call("DELETE", target, path, NULL, result, err, errlen);
	snprintf(body, sizeof(body), "{\"limit\":%lld}", (long long)json_object_get_int64(v));
	return rl_exec_call("PUT", target, path, body, result, err, errlen);
}

int
rl_execute(struct op_subject *s, const char *action, json_object *params,
    json_object **result, char *err, size_t errlen)
{
	struct rl_priv *p = s->priv;
	struct rl_probe pr[RL_NODES_MAX];
	const struct rl_probe *target;
	char path[4 * RL_KEYNAME_MAX];
	const char *key = op_json_str(params, "key", NULL);

	*result = NULL;
	rl_probe_nodes(p, pr);
	if (strcmp(action, "reset_counter") == 0) {
		if ((target = rl_exec_first(pr, p->nnodes, err, errlen)) == NULL ||
		    rl_exec_key_path(key, "/api/counters/%s/reset", path, sizeof(path), err,
			errlen) != 0)
			return -1;
		return rl_exec_call("POST", target, path, "{}", result, err, errlen);
	}
	if (strcmp(action, "update_limit") == 0) {
		char body[64];
		json_object *undo;
		if ((target = rl_exec_first(pr, p->nnodes, err, errlen)) == NULL ||
		    rl_exec_key_path(key, "/api/limits/%s", path, sizeof(path), err, errlen) != 0)
			return -1;
		/* what undo needs, read before the change: never undo blind */
		if ((undo = rl_undo_limit(target, key, err, errlen)) == NULL)
			return -1;
		snprintf(body, sizeof(body), "{\"limit\":%lld}",
		    (long long)op_json_int(params, "limit", -1));
		int rc = rl_exec_call("PUT", target, path, body, result, err, errlen);
		if (*result != NULL)
			json_object_object_add(*result, "undo", undo);
		else
			json_object_put(undo);
		return rc;
	}
	if (strcmp(action, "resync_node") == 0) {
		const char *node = op_json_str(params, "node", "");
		if ((target = rl_probe_find(pr, p->nnodes, node)) == NULL) {
			snprintf(err, errlen, "unknown node \"%s\": neither a node id nor a configured URL",
			    node);
			return -1;
		}
		if (!target->reachable) {
			snprintf(err, errlen, "node %s (%s) is unreachable: %s", node, target->url,
			    target->err);
			return -1;
		}
		return rl_exec_call("POST", target, "/api/resync", "{}", result, err, errlen);
	}
	snprintf(err, errlen, "unknown action \"%s\"", action);
	return -1;
}
