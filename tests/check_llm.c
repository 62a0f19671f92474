/*
 * The diagnoser's model backends (workers/llm_*.c).
 *
 *   unit     configuration, key file mode, scrubbing, schema, parsing, checks,
 *            agreement, cost, observation summary (no processes)
 *   engine   the diagnosis engine on a libevent loop against llmsrv as a real
 *            process: every stop reason, error status, retry-after, malformed
 *            and empty bodies, a hung connection, corrections, cache, budget,
 *            several tickets in flight, both APIs
 *   e2e      operatord with backend = anthropic pointed at llmsrv, redis-server
 *            and three rlnodes: a counter-drift ticket diagnosed by the model,
 *            acted on and verified; an out-of-catalogue plan never executed;
 *            no trace of the API key in the log, the events or the ledger
 *
 * Binaries come from the environment: LLMSRV_BIN, and for e2e OPERATORD_BIN
 * OPSEND_BIN OPTAIL_BIN RLNODE_BIN RLLOAD_BIN (redis-server from $PATH).
 * The test process never touches nng: operatord is driven through opsend/optail.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <dirent.h>
#include <unistd.h>

#include <curl/curl.h>

#include "common/config.h"
#include "common/http.h"
#include "common/jsonutil.h"
#include "common/util.h"
#include "subjects/subject.h"
#include "tests/harness.h"
#include "workers/llm.h"

#define T_KEY_ENV "OPD_TEST_LLM_KEY"
#define T_MODEL "claude-sonnet-4-5"
#define T_OAI_MODEL "gpt-4o-mini"
#define T_TCASE_TIMEOUT 600   /* seconds per test; check kills after 4 s otherwise */
#define T_LOOP_MS 120000      /* fault to terminal ticket, e2e */

/* Shared between the check parent (fixtures) and the forked tests. */
struct t_shared {
	pid_t srv_pid;
	int srv_port;
	char key[80];
	char dir[128];
	int e2e_ready;
};
static struct t_shared *T;

static struct op_subject t_rl = {.ops = &rl_subject_ops, .name = "ratelimiter"};

/* ------------------------------------------------------------------ */
/* llmsrv */

static void
t_srv_start(void)
{
	char portfile[256], port_arg[16];
	const char *bin = getenv("LLMSRV_BIN");
	int ok = 0;

	if (T->dir[0] == '\0') {
		snprintf(T->dir, sizeof(T->dir), "/tmp/check_llm.XXXXXX");
		if (mkdtemp(T->dir) == NULL) {
			perror("mkdtemp");
			return;
		}
	}
	snprintf(portfile, sizeof(portfile), "%s/llmsrv.port", T->dir);
	unlink(portfile);
	snprintf(port_arg, sizeof(port_arg), "0");
	fflush(NULL);
	pid_t pid = fork();
	if (pid == 0) {
		char logp[256];
		snprintf(logp, sizeof(logp), "%s/llmsrv.log", T->dir);
		int fd = open(logp, O_WRONLY | O_CREAT | O_APPEND, 0644);
		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
			close(fd);
		}
		setpgid(0, 0);
		execl(bin, bin, "--port", port_arg, "--port-file", portfile, "--key", T->key,
		    (char *)NULL);
		_exit(127);
	}
	T->srv_pid = pid;
	for (int i = 0; i < 200 && !ok; i++) {
		FILE *f = fopen(portfile, "r");
		if (f != NULL) {
			ok = fscanf(f, "%d", &T->srv_port) == 1;
			fclose(f);
		}
		if (!ok)
			op_sleep_ms(25);
	}
	if (!ok)
		fprintf(stderr, "check_llm: llmsrv did not start\n");
}

static void
t_srv_stop(void)
{
	if (T->srv_pid > 0) {
		kill(T->srv_pid, SIGTERM);
		for (int i = 0; i < 100 && waitpid(T->srv_pid, NULL, WNOHANG) == 0; i++)
			op_sleep_ms(20);
		kill(T->srv_pid, SIGKILL);
		waitpid(T->srv_pid, NULL, WNOHANG);
		T->srv_pid = 0;
	}
}

static json_object *
t_srv(const char *method, const char *path, const char *body)
{
	struct op_http_req r;
	char url[256], perr[128];
	json_object *j;

	memset(&r, 0, sizeof(r));
	snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", T->srv_port, path);
	r.method = method;
	r.url = url;
	r.body = body;
	r.timeout_ms = 5000;
	ck_assert_msg(op_http_do(&r) == 0 && r.status == 200, "llmsrv %s %s: %ld %s", method, path,
	    r.status, r.err);
	j = op_json_parse(r.resp ? r.resp : "", r.resp_len, perr, sizeof(perr));
	op_http_req_reset(&r);
	return j;
}

static void
t_reset(void)
{
	json_object_put(t_srv("POST", "/_reset", "{}"));
}

/* Queues cases given as a JSON array text. */
static void
t_script(const char *cases_json)
{
	char *b = malloc(strlen(cases_json) + 32);

	sprintf(b, "{\"cases\":%s}", cases_json);
	json_object_put(t_srv("POST", "/_script", b));
	free(b);
}

static json_object *
t_requests(void)
{
	return t_srv("GET", "/_requests", NULL);
}

/* e2e: other tickets (high latency under load, say) reach the model too.
 * Cases carry "match" so only the ticket under test gets them; the rest get
 * a 400 and fall back at once. */
static void
t_script_e2e(const char *entity, const char *const *cases, size_t n)
{
	size_t len = 64;
	char match[160];

	snprintf(match, sizeof(match), "\"match\":\"entity: %s\\\\n\",", entity);
	for (size_t i = 0; i < n; i++)
		len += strlen(cases[i]) + strlen(match) + 4;
	char *b = malloc(len + 256);
	strcpy(b, "{\"default\":{\"kind\":\"error\",\"status\":400,\"message\":"
	    "\"not the ticket under test\"},\"cases\":[");
	for (size_t i = 0; i < n; i++) {
		strcat(b, i ? ",{" : "{");
		strcat(b, match);
		strcat(b, cases[i] + 1); /* the case without its opening brace */
	}
	strcat(b, "]}");
	json_object_put(t_srv("POST", "/_script", b));
	free(b);
}

/* Requests llmsrv recorded for the ticket on entity. */
static json_object *
t_requests_for(const char *entity)
{
	json_object *all = t_requests(), *out = json_object_new_array();
	char match[160];

	snprintf(match, sizeof(match), "entity: %s\n", entity);
	for (size_t i = 0; i < json_object_array_length(all); i++) {
		json_object *r = json_object_array_get_idx(all, i);
		json_object *m0 = json_object_array_get_idx(op_json_arr(op_json_obj(r, "body"),
		    "messages"), 0);
		if (strstr(op_json_str(m0, "content", ""), match) != NULL)
			json_object_array_add(out, json_object_get(r));
	}
	json_object_put(all);
	return out;
}

/* A full diagnosis (DESIGN §6) recommending one action. */
static char *
t_diag(const char *action, const char *params)
{
	char *s = NULL;

	if (asprintf(&s, "{\"timeline\":[\"drift reported\"],\"affected_components\":[\"redis\"],"
	    "\"metric_readings\":[{\"name\":\"drift\",\"value\":12,\"unit\":\"requests\"}],"
	    "\"primary_diagnosis\":\"retried increments double-counted during a Redis stall\","
	    "\"confidence\":0.8,\"supporting_evidence\":[\"Redis counts more than the nodes allowed\"],"
	    "\"alternatives_considered\":[{\"hypothesis\":\"clock skew\",\"supporting\":\"none\","
	    "\"contradicting\":\"Redis TIME everywhere\",\"conclusion\":\"ruled out\"}],"
	    "\"severity\":\"warning\",\"risks\":[\"a reset forgets the window\"],"
	    "\"recommended_actions\":[{\"action\":\"%s\",\"parameters\":%s,\"reason\":\"align\","
	    "\"urgency\":\"soon\",\"expected_outcome\":\"drift within tolerance\"}]}",
	    action, params) < 0)
		return NULL;
	return s;
}

static char *
t_case(const char *kind_extra, const char *action, const char *params)
{
	char *d = action ? t_diag(action, params) : NULL, *s = NULL;

	if (asprintf(&s, "{%s%s%s}", kind_extra, d ? ",\"input\":" : "", d ? d : "") < 0)
		s = NULL;
	free(d);
	return s;
}

/* ------------------------------------------------------------------ */
/* engine harness: one event loop in the test process */

struct t_done {
	int n;
	json_object *out[8];
};

static void
t_on_done(void *arg, const struct llm_outcome *o)
{
	struct t_done *d = arg;
	json_object *j = json_object_new_object();

	json_object_object_add(j, "diagnosis", json_object_get(o->diagnosis));
	json_object_object_add(j, "backend", json_object_new_string(o->backend));
	json_object_object_add(j, "model", json_object_new_string(o->model ? o->model : ""));
	json_object_object_add(j, "agreed", json_object_new_int(o->agreed));
	json_object_object_add(j, "tokens_in", json_object_new_int64(o->tokens_in));
	json_object_object_add(j, "tokens_out", json_object_new_int64(o->tokens_out));
	json_object_object_add(j, "cost_usd", json_object_new_double(o->cost_usd));
	json_object_object_add(j, "calls", json_object_new_int(o->calls));
	json_object_object_add(j, "cached", json_object_new_int(o->cached));
	json_object_object_add(j, "require_approval", json_object_new_int(o->require_approval));
	if (o->fallback_reason)
		json_object_object_add(j, "fallback_reason", json_object_new_string(o->fallback_reason));
	if (d->n < 8)
		d->out[d->n++] = j;
	else
		json_object_put(j);
}

struct t_eng {
	struct event_base *base;
	struct llm_conf conf;
	struct llm_engine *e;
	struct t_done done;
};

static void
t_eng_init(struct t_eng *t, enum llm_backend b, const char *extra)
{
	char cfg[1024], err[256];

	memset(t, 0, sizeof(*t));
	snprintf(cfg, sizeof(cfg), "[diagnoser]\nbackend = %s\nmodel = %s\n"
	    "base_url = http://127.0.0.1:%d\napi_key_env = %s\ntimeout = 5s\n%s",
	    llm_backend_name(b), b == LLM_ANTHROPIC ? T_MODEL : T_OAI_MODEL, T->srv_port,
	    T_KEY_ENV, extra ? extra : "");
	struct op_config *c = op_config_parse(cfg, err, sizeof(err));
	ck_assert_msg(c != NULL, "config: %s", err);
	ck_assert_msg(llm_conf_load(c, &t->conf, err, sizeof(err)) == 0, "conf: %s", err);
	op_config_free(c);
	t->base = event_base_new();
	t->e = llm_engine_new(t->base, &t->conf, T->key);
	ck_assert_ptr_nonnull(t->e);
	t_reset();
}

static void
t_eng_fini(struct t_eng *t)
{
	llm_engine_free(t->e);
	event_base_free(t->base);
	for (int i = 0; i < t->done.n; i++)
		json_object_put(t->done.out[i]);
}

/* The engine tests' ticket invariant; a plan must fit it (op_plan_fits). */
static const char *t_invariant = "counter_drift";

static json_object *
t_ticket(const char *entity, int attempts)
{
	json_object *t = json_object_new_object(), *ev = json_object_new_object();

	json_object_object_add(t, "id", json_object_new_int64(7));
	json_object_object_add(t, "subject", json_object_new_string("ratelimiter"));
	json_object_object_add(t, "invariant", json_object_new_string(t_invariant));
	json_object_object_add(t, "entity", json_object_new_string(entity));
	json_object_object_add(t, "severity", json_object_new_string("warning"));
	json_object_object_add(t, "message", json_object_new_string("Redis 120, nodes 100"));
	json_object_object_add(t, "attempts", json_object_new_int(attempts));
	json_object_object_add(ev, "redis_count", json_object_new_int(120));
	json_object_object_add(ev, "node_allowed_sum", json_object_new_int(100));
	json_object_object_add(ev, "drift", json_object_new_int(20));
	json_object_object_add(t, "evidence", ev);
	return t;
}

static json_object *
t_rules(const char *entity)
{
	json_object *d = op_diag_new("counter drift (rules)", 0.85, "warning"), *p;

	p = json_object_new_object();
	op_json_set_str(p, "key", entity);
	op_diag_add_action(d, "reset_counter", p, "rules", "soon", "aligned");
	return d;
}

static json_object *
t_history(void)
{
	const char *h = "[{\"id\":3,\"entity\":\"old-key\",\"status\":\"resolved\",\"reason\":null,"
	    "\"actions\":[{\"name\":\"reset_counter\",\"params\":{\"key\":\"old-key\"},"
	    "\"status\":\"executed\",\"error\":null}],\"verifications\":[{\"result\":\"success\","
	    "\"figures\":{\"value\":0}}]}]";
	return json_tokener_parse(h);
}

static json_object *
t_obs(const char *entity)
{
	json_object *o = json_object_new_object(), *keys = json_object_new_array();

	for (int i = 0; i < 200; i++) {
		json_object *k = json_object_new_object();
		char name[32];
		snprintf(name, sizeof(name), "filler-%03d", i);
		json_object_object_add(k, "key", json_object_new_string(i == 150 ? entity : name));
		json_object_object_add(k, "redis_count", json_object_new_int(i));
		json_object_array_add(keys, k);
	}
	json_object_object_add(o, "keys", keys);
	return o;
}

static void
t_start(struct t_eng *t, const char *entity, int attempts)
{
	json_object *tk = t_ticket(entity, attempts), *h = t_history(), *o = t_obs(entity);

	llm_diagnose(t->e, &t_rl, tk, h, o, NULL, t_rules(entity), t_on_done, &t->done);
	json_object_put(tk);
	json_object_put(h);
	json_object_put(o);
}

static void
t_on_guard(evutil_socket_t fd, short w, void *arg)
{
	(void)fd;
	(void)w;
	event_base_loopbreak(arg);
}

static void
t_on_poll(evutil_socket_t fd, short w, void *arg)
{
	struct t_eng *t = arg;

	(void)fd;
	(void)w;
	if (llm_engine_inflight(t->e) == 0)
		event_base_loopbreak(t->base);
}

/* Runs the loop until no job is in flight (bounded). */
static void
t_run(struct t_eng *t, int max_ms)
{
	struct event *guard = evtimer_new(t->base, t_on_guard, t->base);
	struct event *poll = event_new(t->base, -1, EV_PERSIST, t_on_poll, t);
	struct timeval g = {max_ms / 1000, (max_ms % 1000) * 1000}, p = {0, 20000};

	evtimer_add(guard, &g);
	event_add(poll, &p);
	if (llm_engine_inflight(t->e) > 0)
		event_base_dispatch(t->base);
	event_free(guard);
	event_free(poll);
	ck_assert_msg(llm_engine_inflight(t->e) == 0, "diagnosis still in flight after %d ms", max_ms);
}

static json_object *
t_one(struct t_eng *t, const char *entity, int max_ms)
{
	int before = t->done.n;

	t_start(t, entity, 0);
	t_run(t, max_ms);
	ck_assert_int_eq(t->done.n, before + 1);
	return t->done.out[before];
}

static const char *
t_s(json_object *o, const char *k)
{
	return op_json_str(o, k, "");
}

static void
t_assert_clean_requests(json_object *reqs)
{
	for (size_t i = 0; i < json_object_array_length(reqs); i++) {
		json_object *r = json_object_array_get_idx(reqs, i);
		json_object *p = op_json_arr(r, "problems");
		ck_assert_msg(op_json_bool(r, "key_ok", 0), "request %zu: wrong key", i);
		ck_assert_msg(p != NULL && json_object_array_length(p) == 0, "request %zu shape: %s", i,
		    json_object_to_json_string(p));
	}
}

static void
t_assert_fallback(json_object *o, const char *words)
{
	ck_assert_str_eq(t_s(o, "backend"), "rules");
	ck_assert_msg(strstr(t_s(o, "fallback_reason"), words) != NULL,
	    "fallback_reason \"%s\" lacks \"%s\"", t_s(o, "fallback_reason"), words);
	json_object *acts = op_json_arr(op_json_obj(o, "diagnosis"), "recommended_actions");
	ck_assert_msg(acts && json_object_array_length(acts) == 1 &&
	    !strcmp(t_s(json_object_array_get_idx(acts, 0), "action"), "reset_counter"),
	    "the fallback is not the rules' plan");
	ck_assert_int_eq(op_json_int(o, "agreed", 0), 1);
}

/* ------------------------------------------------------------------ */
/* unit */

static struct op_config *
t_cfg(const char *text)
{
	char err[256];
	struct op_config *c = op_config_parse(text, err, sizeof(err));

	ck_assert_msg(c != NULL, "parse: %s", err);
	return c;
}

static int
t_conf(const char *text, struct llm_conf *lc, char *err, size_t errlen)
{
	struct op_config *c = t_cfg(text);
	int rc = llm_conf_load(c, lc, err, errlen);

	op_config_free(c);
	return rc;
}

START_TEST(t_conf_defaults_and_errors)
{
	struct llm_conf lc;
	char err[512];

	ck_assert_int_eq(t_conf("[operatord]\nmode = observe\n", &lc, err, sizeof(err)), 0);
	ck_assert_int_eq(lc.backend, LLM_RULES);
	ck_assert_int_eq(lc.timeout_ms, 30000);
	ck_assert_int_eq(lc.max_calls_per_hour, 60);
	ck_assert_int_eq(lc.require_approval_on_disagreement, 1); /* safe by default */

	ck_assert_int_eq(t_conf("[diagnoser]\nbackend = gemini\n", &lc, err, sizeof(err)), -1);
	ck_assert_msg(strstr(err, "[diagnoser] backend") != NULL, "%s", err);
	ck_assert_int_eq(t_conf("[diagnoser]\nbackend = openai\n", &lc, err, sizeof(err)), -1);
	ck_assert_msg(strstr(err, "model") != NULL, "%s", err);
	ck_assert_int_eq(t_conf("[diagnoser]\nbackend = anthropic\n", &lc, err, sizeof(err)), -1);
	ck_assert_msg(strstr(err, "api_key") != NULL, "%s", err);
	ck_assert_int_eq(t_conf("[diagnoser]\nbackend = rules\ntimeot = 5s\n", &lc, err,
	    sizeof(err)), -1);
	ck_assert_msg(strstr(err, "timeot") != NULL, "%s", err);
	ck_assert_int_eq(t_conf("[diagnoser]\nbackend = anthropic\napi_key_env = "
	    "OPD_SURELY_UNSET_VAR\n", &lc, err, sizeof(err)), -1);
	ck_assert_msg(strstr(err, "not set") != NULL, "%s", err);
	ck_assert_int_eq(t_conf("[diagnoser]\nbackend = openai\nmodel = m\nbase_url = ftp://x\n",
	    &lc, err, sizeof(err)), -1);
	ck_assert_int_eq(t_conf("[diagnoser]\ntimeout = forever\n", &lc, err, sizeof(err)), -1);
	ck_assert_int_eq(t_conf("[diagnoser]\nmax_calls_per_hour = -1\n", &lc, err, sizeof(err)), -1);
	ck_assert_int_eq(t_conf("[diagnoser]\nrequire_approval_on_disagreement = maybe\n", &lc, err,
	    sizeof(err)), -1);

	/* A local server needs no key; /v1 on the base URL is accepted. */
	ck_assert_int_eq(t_conf("[diagnoser]\nbackend = openai\nmodel = qwen2.5\n"
	    "base_url = http://127.0.0.1:8080/v1/\ntimeout = 45s\nmax_calls_per_hour = 5\n"
	    "require_approval_on_disagreement = true\n", &lc, err, sizeof(err)), 0);
	ck_assert_str_eq(lc.base_url, "http://127.0.0.1:8080");
	ck_assert_int_eq(lc.timeout_ms, 45000);
	ck_assert_int_eq(lc.max_calls_per_hour, 5);
	ck_assert_int_eq(lc.require_approval_on_disagreement, 1);

	setenv("OPD_UNIT_KEY", "sk-unit-0123456789", 1);
	ck_assert_int_eq(t_conf("[diagnoser]\nbackend = anthropic\napi_key_env = OPD_UNIT_KEY\n",
	    &lc, err, sizeof(err)), 0);
	ck_assert_str_eq(lc.model, "claude-sonnet-4-5");
	ck_assert_str_eq(lc.base_url, "https://api.anthropic.com");
	ck_assert_msg(strstr(err, "sk-unit") == NULL, "key in an error string");
}
END_TEST

START_TEST(t_conf_key_file_mode)
{
	char dir[] = "/tmp/check_llm_key.XXXXXX", path[128], cfg[256], err[512], *key = NULL;
	struct llm_conf lc;

	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/key", dir);
	FILE *f = fopen(path, "w");
	ck_assert_ptr_nonnull(f);
	fputs("sk-file-secret-42\n", f);
	fclose(f);
	snprintf(cfg, sizeof(cfg), "[diagnoser]\nbackend = anthropic\napi_key_file = %s\n", path);

	chmod(path, 0644);
	ck_assert_int_eq(t_conf(cfg, &lc, err, sizeof(err)), -1);
	ck_assert_msg(strstr(err, "0600") != NULL && strstr(err, "api_key_file") != NULL, "%s", err);
	ck_assert_msg(strstr(err, "sk-file") == NULL, "key in an error string");
	chmod(path, 0640);
	ck_assert_int_eq(t_conf(cfg, &lc, err, sizeof(err)), -1);

	chmod(path, 0600);
	ck_assert_msg(t_conf(cfg, &lc, err, sizeof(err)) == 0, "%s", err);
	ck_assert_int_eq(llm_key_load(&lc, &key, err, sizeof(err)), 0);
	ck_assert_str_eq(key, "sk-file-secret-42");
	free(key);

	snprintf(cfg, sizeof(cfg), "[diagnoser]\nbackend = anthropic\napi_key_file = %s/nope\n", dir);
	ck_assert_int_eq(t_conf(cfg, &lc, err, sizeof(err)), -1);
	snprintf(cfg, sizeof(cfg), "[diagnoser]\nbackend = anthropic\napi_key_file = %s\n"
	    "api_key_env = HOME\n", path);
	ck_assert_int_eq(t_conf(cfg, &lc, err, sizeof(err)), -1);
	unlink(path);
	rmdir(dir);
}
END_TEST

START_TEST(t_scrub)
{
	char s[128];

	snprintf(s, sizeof(s), "HTTP 401: bad key sk-ant-abcdef0123456789 (sk-ant-abcdef0123456789)");
	llm_scrub(s, "sk-ant-abcdef0123456789");
	ck_assert_ptr_null(strstr(s, "sk-ant-abcdef0123456789"));
	ck_assert_ptr_nonnull(strstr(s, "[redacted]"));
	snprintf(s, sizeof(s), "short abcde key");
	llm_scrub(s, "abcde");
	ck_assert_ptr_null(strstr(s, "abcde"));
	llm_scrub(s, NULL);
}
END_TEST

/* Every object in the schema obeys OpenAI's strict-mode rules. */
static void
t_strict_ok(json_object *s)
{
	json_object *props, *req, *items, *ap;

	if (!json_object_is_type(s, json_type_object))
		return;
	if (json_object_object_get_ex(s, "properties", &props)) {
		ck_assert_msg(json_object_object_get_ex(s, "additionalProperties", &ap) &&
		    !json_object_get_boolean(ap), "additionalProperties false missing");
		ck_assert_msg(json_object_object_get_ex(s, "required", &req), "required missing");
		ck_assert_int_eq(json_object_array_length(req), json_object_object_length(props));
		json_object_object_foreach(props, k, v)
		{
			(void)k;
			t_strict_ok(v);
		}
	}
	if (json_object_object_get_ex(s, "items", &items))
		t_strict_ok(items);
}

START_TEST(t_schema_from_catalogue)
{
	json_object *s = llm_schema(&t_rl);
	json_object *act = op_json_obj(op_json_obj(op_json_obj(op_json_obj(op_json_obj(s,
	    "properties"), "recommended_actions"), "items"), "properties"), "action");
	json_object *en = op_json_arr(act, "enum");
	json_object *params = op_json_obj(op_json_obj(op_json_obj(op_json_obj(op_json_obj(s,
	    "properties"), "recommended_actions"), "items"), "properties"), "parameters");

	t_strict_ok(s);
	ck_assert_int_eq(json_object_array_length(en), rl_subject_ops.nactions);
	ck_assert_ptr_nonnull(op_json_obj(op_json_obj(params, "properties"), "key"));
	ck_assert_ptr_nonnull(op_json_obj(op_json_obj(params, "properties"), "limit"));
	ck_assert_ptr_nonnull(op_json_obj(op_json_obj(params, "properties"), "node"));
	for (size_t i = 0; i < llm_diag_nkeys(); i++)
		ck_assert_ptr_nonnull(op_json_obj(op_json_obj(s, "properties"), llm_diag_key(i)));
	json_object_put(s);
}
END_TEST

START_TEST(t_prompt_contents)
{
	json_object *tk = t_ticket("hot-key", 0), *h = t_history(), *o = t_obs("hot-key");
	char *p = llm_user_prompt(&t_rl, tk, h, o, NULL);

	ck_assert_ptr_nonnull(p);
	ck_assert_ptr_nonnull(strstr(p, "hot-key"));
	ck_assert_ptr_nonnull(strstr(p, "counter_drift"));
	ck_assert_ptr_nonnull(strstr(p, rl_subject_ops.description));
	for (size_t i = 0; i < rl_subject_ops.nactions; i++)
		ck_assert_ptr_nonnull(strstr(p, rl_subject_ops.actions[i].name));
	ck_assert_ptr_nonnull(strstr(p, "0..1000000000"));     /* update_limit's bounds */
	ck_assert_ptr_nonnull(strstr(p, "verification: success")); /* history with outcomes */
	ck_assert_ptr_nonnull(strstr(p, "more omitted"));      /* the observation is cut */
	ck_assert_msg(strlen(p) < 16000, "prompt of %zu bytes", strlen(p));
	free(p);
	p = llm_user_prompt(&t_rl, tk, NULL, NULL, "connection refused");
	ck_assert_ptr_nonnull(strstr(p, "connection refused"));
	free(p);
	json_object_put(tk);
	json_object_put(h);
	json_object_put(o);
}
END_TEST

START_TEST(t_compact_entity_first)
{
	json_object *o = t_obs("the-key");
	json_object *c = llm_compact_obs(o, "the-key", 2000);
	const char *s = json_object_to_json_string(c);

	ck_assert_msg(strlen(s) <= 2000, "%zu bytes", strlen(s));
	ck_assert_ptr_nonnull(strstr(s, "the-key"));
	ck_assert_ptr_null(llm_compact_obs(NULL, "x", 100));
	json_object_put(c);
	json_object_put(o);
}
END_TEST

static json_object *
t_parse_diag(const char *action, const char *params)
{
	char *s = t_diag(action, params);
	json_object *d = json_tokener_parse(s);

	free(s);
	ck_assert_ptr_nonnull(d);
	return d;
}

START_TEST(t_check_answer)
{
	char errs[1024];
	json_object *d;

	d = t_parse_diag("reset_counter", "{\"key\":\"k1\",\"limit\":null,\"node\":null}");
	ck_assert_msg(llm_check_answer(&t_rl, d, errs, sizeof(errs)) == 0, "%s", errs);
	/* null parameters are "not given" and are dropped */
	json_object *p = op_json_obj(json_object_array_get_idx(op_json_arr(d,
	    "recommended_actions"), 0), "parameters");
	ck_assert_int_eq(json_object_object_length(p), 1);
	json_object_put(d);

	d = t_parse_diag("restart_redis", "{}");
	ck_assert_int_eq(llm_check_answer(&t_rl, d, errs, sizeof(errs)), -1);
	ck_assert_msg(strstr(errs, "not in the action catalogue") != NULL, "%s", errs);
	json_object_put(d);

	d = t_parse_diag("update_limit", "{\"key\":\"k1\",\"limit\":5000000000}");
	ck_assert_int_eq(llm_check_answer(&t_rl, d, errs, sizeof(errs)), -1);
	ck_assert_msg(strstr(errs, "outside") != NULL, "%s", errs);
	json_object_put(d);

	d = t_parse_diag("update_limit", "{\"key\":\"k1\",\"limit\":-5}");
	ck_assert_int_eq(llm_check_answer(&t_rl, d, errs, sizeof(errs)), -1);
	json_object_put(d);

	/* the one coercion: "5000" -> 5000 */
	d = t_parse_diag("update_limit", "{\"key\":\"k1\",\"limit\":\"5000\"}");
	ck_assert_msg(llm_check_answer(&t_rl, d, errs, sizeof(errs)) == 0, "%s", errs);
	p = op_json_obj(json_object_array_get_idx(op_json_arr(d, "recommended_actions"), 0),
	    "parameters");
	json_object *lim = NULL;
	json_object_object_get_ex(p, "limit", &lim);
	ck_assert(json_object_is_type(lim, json_type_int));
	ck_assert_int_eq(json_object_get_int64(lim), 5000);
	json_object_put(d);

	d = t_parse_diag("update_limit", "{\"key\":\"k1\",\"limit\":\"lots\"}");
	ck_assert_int_eq(llm_check_answer(&t_rl, d, errs, sizeof(errs)), -1);
	json_object_put(d);

	d = t_parse_diag("reset_counter", "{}");
	ck_assert_int_eq(llm_check_answer(&t_rl, d, errs, sizeof(errs)), -1);
	ck_assert_msg(strstr(errs, "missing parameter") != NULL, "%s", errs);
	json_object_put(d);

	d = t_parse_diag("reset_counter", "{\"key\":\"k\",\"rm_rf\":\"/\"}");
	ck_assert_int_eq(llm_check_answer(&t_rl, d, errs, sizeof(errs)), -1);
	json_object_put(d);

	d = t_parse_diag("reset_counter", "{\"key\":\"k\"}");
	json_object_object_add(d, "confidence", json_object_new_double(7.0));
	json_object_object_add(d, "severity", json_object_new_string("apocalyptic"));
	json_object_object_del(d, "timeline");
	ck_assert_int_eq(llm_check_answer(&t_rl, d, errs, sizeof(errs)), -1);
	ck_assert_msg(strstr(errs, "confidence") && strstr(errs, "severity") &&
	    strstr(errs, "timeline"), "%s", errs);
	json_object_put(d);

	ck_assert_int_eq(llm_check_answer(&t_rl, NULL, errs, sizeof(errs)), -1);
}
END_TEST

START_TEST(t_agreement_and_cost)
{
	json_object *a = t_parse_diag("reset_counter", "{\"key\":\"a\"}");
	json_object *b = t_parse_diag("reset_counter", "{\"key\":\"b\"}");
	json_object *c = t_parse_diag("update_limit", "{\"key\":\"a\",\"limit\":3}");
	json_object *e = op_diag_new("nothing", 0.1, "info");

	ck_assert(llm_plans_agree(a, b));
	ck_assert(!llm_plans_agree(a, c));
	ck_assert(!llm_plans_agree(a, e));
	ck_assert(llm_plans_agree(e, e));
	ck_assert(llm_cost_usd("claude-sonnet-4-5", 1000000, 0) == 3.0);
	ck_assert(llm_cost_usd("claude-sonnet-4-5", 0, 1000000) == 15.0);
	ck_assert(llm_cost_usd("gpt-4o-mini", 1000000, 1000000) > 0.7 &&
	    llm_cost_usd("gpt-4o-mini", 1000000, 1000000) < 0.8);
	ck_assert(llm_cost_usd("qwen2.5:7b", 1000000, 1000000) == 0.0);
	json_object_put(a);
	json_object_put(b);
	json_object_put(c);
	json_object_put(e);
}
END_TEST

static void
t_parse_body(enum llm_backend b, long status, const char *body, int64_t retry_after,
    struct llm_result *r)
{
	struct llm_http_result h = {.status = status, .body = body, .len = strlen(body),
		.retry_after_ms = retry_after, .request_id = "", .err = ""};

	llm_parse(b, &h, r);
}

START_TEST(t_parse_responses)
{
	struct llm_result r;

	t_parse_body(LLM_ANTHROPIC, 200, "{\"type\":\"message\",\"content\":[{\"type\":\"tool_use\","
	    "\"id\":\"toolu_1\",\"name\":\"" LLM_TOOL_NAME "\",\"input\":{\"a\":1}}],"
	    "\"stop_reason\":\"tool_use\",\"usage\":{\"input_tokens\":10,\"output_tokens\":5,"
	    "\"cache_read_input_tokens\":2}}", -1, &r);
	ck_assert_int_eq(r.kind, LLM_R_OK);
	ck_assert_int_eq(r.tokens_in, 12);
	ck_assert_int_eq(r.tokens_out, 5);
	ck_assert_str_eq(r.tool_use_id, "toolu_1");
	llm_result_clear(&r);

	t_parse_body(LLM_ANTHROPIC, 429, "{\"type\":\"error\",\"error\":{\"type\":"
	    "\"rate_limit_error\",\"message\":\"slow down\"}}", 2000, &r);
	ck_assert_int_eq(r.kind, LLM_R_RETRY);
	ck_assert_int_eq(r.delay_ms, 2000);
	ck_assert_ptr_nonnull(strstr(r.why, "rate_limit_error"));
	llm_result_clear(&r);

	t_parse_body(LLM_ANTHROPIC, 529, "{\"type\":\"error\",\"error\":{\"type\":"
	    "\"overloaded_error\",\"message\":\"Overloaded\"}}", -1, &r);
	ck_assert_int_eq(r.kind, LLM_R_RETRY);
	llm_result_clear(&r);

	t_parse_body(LLM_OPENAI, 429, "{\"error\":{\"message\":\"quota\",\"type\":"
	    "\"insufficient_quota\",\"code\":\"insufficient_quota\"}}", -1, &r);
	ck_assert_int_eq(r.kind, LLM_R_FAIL);
	llm_result_clear(&r);

	t_parse_body(LLM_OPENAI, 200, "{\"choices\":[{\"message\":{\"role\":\"assistant\","
	    "\"content\":\"```json\\n{\\\"a\\\":1}\\n```\"},\"finish_reason\":\"stop\"}],"
	    "\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":3}}", -1, &r);
	ck_assert_int_eq(r.kind, LLM_R_OK);
	ck_assert_int_eq(r.tokens_in, 7);
	llm_result_clear(&r);

	t_parse_body(LLM_OPENAI, 502, "<html>bad gateway</html>", -1, &r);
	ck_assert_int_eq(r.kind, LLM_R_RETRY);
	llm_result_clear(&r);

	t_parse_body(LLM_OPENAI, 200, "", -1, &r);
	ck_assert_int_eq(r.kind, LLM_R_RETRY);
	llm_result_clear(&r);
}
END_TEST

/* ------------------------------------------------------------------ */
/* engine against llmsrv */

static void
t_eng_fixture_start(void)
{
	t_srv_start();
}

static void
t_eng_fixture_stop(void)
{
	t_srv_stop();
}

START_TEST(t_anthropic_tool_use)
{
	struct t_eng t;
	char *c = t_case("\"kind\":\"tool_use\"", "reset_counter",
	    "{\"key\":\"k-ok\",\"limit\":null,\"node\":null}");
	char *s;

	t_eng_init(&t, LLM_ANTHROPIC, NULL);
	ck_assert(asprintf(&s, "[%s]", c) > 0);
	t_script(s);
	json_object *o = t_one(&t, "k-ok", 15000);
	ck_assert_str_eq(t_s(o, "backend"), "anthropic");
	ck_assert_str_eq(t_s(o, "model"), T_MODEL);
	ck_assert_ptr_null(op_json_obj(o, "fallback_reason"));
	ck_assert_int_eq(op_json_int(o, "agreed", 0), 1);
	ck_assert_int_eq(op_json_int(o, "tokens_in", 0), 1200);
	ck_assert_int_eq(op_json_int(o, "tokens_out", 0), 350);
	ck_assert(op_json_double(o, "cost_usd", 0) > 0.008 && op_json_double(o, "cost_usd", 0) < 0.01);
	ck_assert_int_eq(op_json_int(o, "calls", 0), 1);
	ck_assert_str_eq(t_s(op_json_obj(o, "diagnosis"), "primary_diagnosis"),
	    "retried increments double-counted during a Redis stall");

	json_object *reqs = t_requests();
	ck_assert_int_eq(json_object_array_length(reqs), 1);
	t_assert_clean_requests(reqs);
	json_object *body = op_json_obj(json_object_array_get_idx(reqs, 0), "body");
	ck_assert_str_eq(t_s(body, "model"), T_MODEL);
	ck_assert_str_eq(t_s(op_json_obj(body, "tool_choice"), "type"), "tool");
	ck_assert_str_eq(t_s(op_json_obj(body, "tool_choice"), "name"), LLM_TOOL_NAME);
	const char *user = t_s(json_object_array_get_idx(op_json_arr(body, "messages"), 0), "content");
	ck_assert_ptr_nonnull(strstr(user, "k-ok"));
	ck_assert_ptr_nonnull(strstr(user, "reset_counter"));
	ck_assert_ptr_nonnull(strstr(user, "verification: success"));
	ck_assert_ptr_null(strstr(json_object_to_json_string(body), T->key));
	json_object_put(reqs);
	free(s);
	free(c);
	t_eng_fini(&t);
}
END_TEST

START_TEST(t_anthropic_end_turn_then_tool)
{
	struct t_eng t;
	char *c = t_case("\"kind\":\"tool_use\"", "reset_counter", "{\"key\":\"k-et\"}"), *s;

	t_eng_init(&t, LLM_ANTHROPIC, NULL);
	ck_assert(asprintf(&s, "[{\"kind\":\"end_turn\"},%s]", c) > 0);
	t_script(s);
	json_object *o = t_one(&t, "k-et", 15000);
	ck_assert_str_eq(t_s(o, "backend"), "anthropic");
	ck_assert_int_eq(op_json_int(o, "calls", 0), 2);
	ck_assert_int_eq(op_json_int(o, "tokens_in", 0), 2400);
	json_object *reqs = t_requests();
	ck_assert_int_eq(json_object_array_length(reqs), 2);
	t_assert_clean_requests(reqs);
	json_object *msgs = op_json_arr(op_json_obj(json_object_array_get_idx(reqs, 1), "body"),
	    "messages");
	ck_assert_int_eq(json_object_array_length(msgs), 3);
	ck_assert_ptr_nonnull(strstr(t_s(json_object_array_get_idx(msgs, 2), "content"),
	    "must answer by calling"));
	json_object_put(reqs);
	free(s);
	free(c);
	t_eng_fini(&t);
}
END_TEST

START_TEST(t_anthropic_out_of_bounds_corrected)
{
	struct t_eng t;
	char *bad = t_case("\"kind\":\"tool_use\"", "update_limit",
	    "{\"key\":\"k-ob\",\"limit\":5000000000,\"node\":null}");
	char *good = t_case("\"kind\":\"tool_use\"", "reset_counter", "{\"key\":\"k-ob\"}"), *s;

	t_eng_init(&t, LLM_ANTHROPIC, NULL);
	ck_assert(asprintf(&s, "[%s,%s]", bad, good) > 0);
	t_script(s);
	json_object *o = t_one(&t, "k-ob", 15000);
	ck_assert_str_eq(t_s(o, "backend"), "anthropic");
	ck_assert_int_eq(op_json_int(o, "calls", 0), 2);
	json_object *reqs = t_requests();
	t_assert_clean_requests(reqs);
	/* The correction answers the tool_use with an error tool_result naming the problem. */
	json_object *msgs = op_json_arr(op_json_obj(json_object_array_get_idx(reqs, 1), "body"),
	    "messages");
	ck_assert_int_eq(json_object_array_length(msgs), 3);
	json_object *tr = json_object_array_get_idx(op_json_arr(json_object_array_get_idx(msgs, 2),
	    "content"), 0);
	ck_assert_str_eq(t_s(tr, "type"), "tool_result");
	ck_assert(op_json_bool(tr, "is_error", 0));
	ck_assert_ptr_nonnull(strstr(t_s(tr, "content"), "outside"));
	json_object_put(reqs);
	free(s);
	free(bad);
	free(good);
	t_eng_fini(&t);
}
END_TEST

START_TEST(t_out_of_catalogue_falls_back)
{
	struct t_eng t;
	char *bad = t_case("\"kind\":\"tool_use\"", "restart_redis", "{}");
	char *bad2 = t_case("\"kind\":\"tool_use\"", "update_limit",
	    "{\"key\":\"k-oc\",\"limit\":-5}"), *s;

	t_eng_init(&t, LLM_ANTHROPIC, NULL);
	ck_assert(asprintf(&s, "[%s,%s]", bad, bad2) > 0);
	t_script(s);
	json_object *o = t_one(&t, "k-oc", 15000);
	t_assert_fallback(o, "invalid answer after a correction");
	ck_assert_msg(strstr(t_s(o, "fallback_reason"), "outside") != NULL, "%s",
	    t_s(o, "fallback_reason"));
	ck_assert_int_eq(op_json_int(o, "calls", 0), 2);
	ck_assert_int_eq(op_json_int(o, "tokens_in", 0), 2400); /* spent even so */
	json_object *reqs = t_requests();
	ck_assert_int_eq(json_object_array_length(reqs), 2);
	json_object_put(reqs);
	free(s);
	free(bad);
	free(bad2);
	t_eng_fini(&t);
}
END_TEST

START_TEST(t_coercion_and_disagreement)
{
	struct t_eng t;
	char *c = t_case("\"kind\":\"tool_use\"", "update_limit",
	    "{\"key\":\"k-dis\",\"limit\":\"5000\",\"node\":null}"), *s;

	t_eng_init(&t, LLM_ANTHROPIC, "require_approval_on_disagreement = true\n");
	ck_assert(asprintf(&s, "[%s]", c) > 0);
	t_script(s);
	t_invariant = "ghost_allowing"; /* update_limit remedies ghost allowing, not drift */
	json_object *o = t_one(&t, "k-dis", 15000);
	t_invariant = "counter_drift";
	ck_assert_str_eq(t_s(o, "backend"), "anthropic");
	ck_assert_int_eq(op_json_int(o, "calls", 0), 1); /* "5000" needs no correction */
	ck_assert_int_eq(op_json_int(o, "agreed", 1), 0);
	ck_assert_int_eq(op_json_int(o, "require_approval", 0), 1);
	json_object *p = op_json_obj(json_object_array_get_idx(op_json_arr(op_json_obj(o,
	    "diagnosis"), "recommended_actions"), 0), "parameters");
	ck_assert_int_eq(op_json_int(p, "limit", 0), 5000);
	ck_assert_int_eq(json_object_object_length(p), 2);
	free(s);
	free(c);
	t_eng_fini(&t);
}
END_TEST

START_TEST(t_stop_reasons_fall_back)
{
	static const char *const kinds[][2] = {
		{"max_tokens", "truncated"}, {"refusal", "declined"},
	};
	for (size_t i = 0; i < 2; i++) {
		struct t_eng t;
		char s[128];
		t_eng_init(&t, LLM_ANTHROPIC, NULL);
		snprintf(s, sizeof(s), "[{\"kind\":\"%s\"}]", kinds[i][0]);
		t_script(s);
		json_object *o = t_one(&t, "k-stop", 15000);
		t_assert_fallback(o, kinds[i][1]);
		ck_assert_int_eq(op_json_int(o, "calls", 0), 1);
		t_eng_fini(&t);
	}
}
END_TEST

START_TEST(t_permanent_errors_fall_back)
{
	static const int codes[] = {400, 401, 403, 404, 413};
	static const char *const types[] = {"invalid_request_error", "authentication_error",
		"permission_error", "not_found_error", "request_too_large"};
	for (size_t i = 0; i < 5; i++) {
		struct t_eng t;
		char s[128], words[64];
		t_eng_init(&t, LLM_ANTHROPIC, NULL);
		snprintf(s, sizeof(s), "[{\"kind\":\"error\",\"status\":%d}]", codes[i]);
		t_script(s);
		json_object *o = t_one(&t, "k-perm", 15000);
		snprintf(words, sizeof(words), "HTTP %d %s", codes[i], types[i]);
		t_assert_fallback(o, words);
		ck_assert_int_eq(op_json_int(o, "calls", 0), 1); /* never retried */
		json_object *reqs = t_requests();
		ck_assert_int_eq(json_object_array_length(reqs), 1);
		json_object_put(reqs);
		t_eng_fini(&t);
	}
}
END_TEST

START_TEST(t_rate_limit_retry_after)
{
	struct t_eng t;
	char *c = t_case("\"kind\":\"tool_use\"", "reset_counter", "{\"key\":\"k-429\"}"), *s;

	t_eng_init(&t, LLM_ANTHROPIC, NULL);
	ck_assert(asprintf(&s, "[{\"kind\":\"error\",\"status\":429,\"retry_after\":\"2\"},%s]",
	    c) > 0);
	t_script(s);
	json_object *o = t_one(&t, "k-429", 20000);
	ck_assert_str_eq(t_s(o, "backend"), "anthropic");
	ck_assert_int_eq(op_json_int(o, "calls", 0), 2);
	json_object *reqs = t_requests();
	ck_assert_int_eq(json_object_array_length(reqs), 2);
	int64_t gap = op_json_int(json_object_array_get_idx(reqs, 1), "t_ms", 0) -
	    op_json_int(json_object_array_get_idx(reqs, 0), "t_ms", 0);
	ck_assert_msg(gap >= 1900, "retried after %lld ms, retry-after was 2 s", (long long)gap);
	json_object_put(reqs);
	free(s);

	/* A retry-after longer than operatord waits: fall back at once. */
	t_reset();
	t_script("[{\"kind\":\"error\",\"status\":429,\"retry_after\":\"3600\"}]");
	o = t_one(&t, "k-429b", 15000);
	t_assert_fallback(o, "retry-after");
	ck_assert_int_eq(op_json_int(o, "calls", 0), 1);
	free(c);
	t_eng_fini(&t);
}
END_TEST

START_TEST(t_server_errors_retry)
{
	struct t_eng t;
	char *c = t_case("\"kind\":\"tool_use\"", "reset_counter", "{\"key\":\"k-5xx\"}"), *s;

	t_eng_init(&t, LLM_ANTHROPIC, NULL);
	ck_assert(asprintf(&s, "[{\"kind\":\"error\",\"status\":500},{\"kind\":\"error\","
	    "\"status\":529},%s]", c) > 0);
	t_script(s);
	json_object *o = t_one(&t, "k-5xx", 20000);
	ck_assert_str_eq(t_s(o, "backend"), "anthropic");
	ck_assert_int_eq(op_json_int(o, "calls", 0), 3);
	free(s);

	/* Overloaded three times: two retries with backoff, then the rules. */
	t_reset();
	int64_t t0 = op_mono_ms();
	t_script("[{\"kind\":\"error\",\"status\":529},{\"kind\":\"error\",\"status\":529},"
	    "{\"kind\":\"error\",\"status\":529}]");
	o = t_one(&t, "k-529", 20000);
	t_assert_fallback(o, "overloaded_error");
	ck_assert_msg(strstr(t_s(o, "fallback_reason"), "gave up after 3 calls") != NULL, "%s",
	    t_s(o, "fallback_reason"));
	ck_assert_msg(op_mono_ms() - t0 >= 2900, "backoff too short");
	free(c);
	t_eng_fini(&t);
}
END_TEST

START_TEST(t_malformed_and_empty)
{
	struct t_eng t;
	char *c = t_case("\"kind\":\"tool_use\"", "reset_counter", "{\"key\":\"k-mal\"}"), *s;

	t_eng_init(&t, LLM_ANTHROPIC, NULL);
	ck_assert(asprintf(&s, "[{\"kind\":\"malformed\"},{\"kind\":\"empty\"},%s]", c) > 0);
	t_script(s);
	json_object *o = t_one(&t, "k-mal", 20000);
	ck_assert_str_eq(t_s(o, "backend"), "anthropic");
	ck_assert_int_eq(op_json_int(o, "calls", 0), 3);
	free(s);

	t_reset();
	t_script("[{\"kind\":\"malformed\"},{\"kind\":\"empty\"},{\"kind\":\"malformed\"}]");
	o = t_one(&t, "k-mal2", 20000);
	t_assert_fallback(o, "malformed");
	free(c);
	t_eng_fini(&t);
}
END_TEST

START_TEST(t_hung_connection_times_out)
{
	struct t_eng t;

	t_eng_init(&t, LLM_ANTHROPIC, "timeout = 1500ms\n");
	t_script("[{\"kind\":\"hang\"}]");
	json_object *o = t_one(&t, "k-hang", 15000);
	t_assert_fallback(o, "no answer in time");
	ck_assert_int_eq(op_json_int(o, "calls", 0), 1);
	t_eng_fini(&t);
}
END_TEST

START_TEST(t_cache_by_fingerprint)
{
	struct t_eng t;
	char *c = t_case("\"kind\":\"tool_use\"", "reset_counter", "{\"key\":\"k-cache\"}"), *s;

	t_eng_init(&t, LLM_ANTHROPIC, NULL);
	ck_assert(asprintf(&s, "[%s,%s]", c, c) > 0);
	t_script(s);
	json_object *o = t_one(&t, "k-cache", 15000);
	ck_assert_int_eq(op_json_int(o, "cached", 1), 0);
	o = t_one(&t, "k-cache", 15000);
	ck_assert_int_eq(op_json_int(o, "cached", 0), 1);
	ck_assert_int_eq(op_json_int(o, "calls", 1), 0);
	ck_assert_int_eq(op_json_int(o, "tokens_in", 1), 0);
	ck_assert_str_eq(t_s(o, "backend"), "anthropic");
	json_object *reqs = t_requests();
	ck_assert_int_eq(json_object_array_length(reqs), 1);
	json_object_put(reqs);
	/* A later attempt on the ticket wants a fresh look. */
	int before = t.done.n;
	t_start(&t, "k-cache", 1);
	t_run(&t, 15000);
	ck_assert_int_eq(op_json_int(t.done.out[before], "cached", 1), 0);
	reqs = t_requests();
	ck_assert_int_eq(json_object_array_length(reqs), 2);
	json_object_put(reqs);
	free(s);
	free(c);
	t_eng_fini(&t);

	/* cache_ttl expires entries. */
	t_eng_init(&t, LLM_ANTHROPIC, "cache_ttl = 300ms\n");
	c = t_case("\"kind\":\"tool_use\"", "reset_counter", "{\"key\":\"k-ttl\"}");
	ck_assert(asprintf(&s, "[%s,%s]", c, c) > 0);
	t_script(s);
	t_one(&t, "k-ttl", 15000);
	op_sleep_ms(400);
	o = t_one(&t, "k-ttl", 15000);
	ck_assert_int_eq(op_json_int(o, "cached", 1), 0);
	free(s);
	free(c);
	t_eng_fini(&t);
}
END_TEST

START_TEST(t_hourly_budget)
{
	struct t_eng t;
	char *a = t_case("\"kind\":\"tool_use\"", "reset_counter", "{\"key\":\"k-b1\"}");
	char *b = t_case("\"kind\":\"tool_use\"", "reset_counter", "{\"key\":\"k-b2\"}"), *s;

	t_eng_init(&t, LLM_ANTHROPIC, "max_calls_per_hour = 2\n");
	ck_assert(asprintf(&s, "[%s,%s]", a, b) > 0);
	t_script(s);
	ck_assert_str_eq(t_s(t_one(&t, "k-b1", 15000), "backend"), "anthropic");
	ck_assert_str_eq(t_s(t_one(&t, "k-b2", 15000), "backend"), "anthropic");
	json_object *o = t_one(&t, "k-b3", 15000);
	t_assert_fallback(o, "max_calls_per_hour");
	ck_assert_int_eq(op_json_int(o, "calls", 1), 0);
	json_object *reqs = t_requests();
	ck_assert_int_eq(json_object_array_length(reqs), 2);
	json_object_put(reqs);
	free(s);
	free(a);
	free(b);
	t_eng_fini(&t);
}
END_TEST

static void
t_on_tick(evutil_socket_t fd, short w, void *arg)
{
	(void)fd;
	(void)w;
	(*(int *)arg)++;
}

START_TEST(t_several_in_flight)
{
	struct t_eng t;
	const char *keys[3] = {"k-p1", "k-p2", "k-p3"};
	char *cs[3], *s;
	int ticks = 0;

	t_eng_init(&t, LLM_ANTHROPIC, NULL);
	for (int i = 0; i < 3; i++) {
		char p[64];
		snprintf(p, sizeof(p), "{\"key\":\"%s\"}", keys[i]);
		cs[i] = t_case("\"kind\":\"tool_use\",\"delay_ms\":1500", "reset_counter", p);
	}
	ck_assert(asprintf(&s, "[%s,%s,%s]", cs[0], cs[1], cs[2]) > 0);
	t_script(s);
	/* The loop keeps serving (a 50 ms tick) while three calls are in flight. */
	struct event *tick = event_new(t.base, -1, EV_PERSIST, t_on_tick, &ticks);
	struct timeval tv = {0, 50000};
	event_add(tick, &tv);
	for (int i = 0; i < 3; i++)
		t_start(&t, keys[i], 0);
	/* All three are in flight at once: concurrent, whatever the machine's speed. */
	ck_assert_int_eq(llm_engine_inflight(t.e), 3);
	t_run(&t, 15000);
	event_free(tick);
	ck_assert_int_eq(t.done.n, 3);
	ck_assert_msg(ticks >= 20, "the loop ticked %d times during the calls", ticks);
	for (int i = 0; i < 3; i++) {
		ck_assert_str_eq(t_s(t.done.out[i], "backend"), "anthropic");
		free(cs[i]);
	}
	free(s);
	t_eng_fini(&t);
}
END_TEST

START_TEST(t_key_scrubbed_from_errors)
{
	struct t_eng t;

	t_eng_init(&t, LLM_ANTHROPIC, NULL);
	t_script("[{\"kind\":\"error\",\"status\":400,\"echo_key\":true}]");
	json_object *o = t_one(&t, "k-echo", 15000);
	t_assert_fallback(o, "[redacted]");
	ck_assert_ptr_null(strstr(json_object_to_json_string(o), T->key));
	t_eng_fini(&t);
}
END_TEST

START_TEST(t_wrong_key_is_401)
{
	struct t_eng t;

	/* llmsrv answers 401 to a wrong key, whatever is scripted. */
	t_eng_init(&t, LLM_ANTHROPIC, NULL);
	llm_engine_free(t.e);
	t.e = llm_engine_new(t.base, &t.conf, "sk-wrong-key-000");
	t_script("[{\"kind\":\"tool_use\"}]");
	json_object *o = t_one(&t, "k-401", 15000);
	t_assert_fallback(o, "HTTP 401 authentication_error");
	t_eng_fini(&t);
}
END_TEST

START_TEST(t_openai_json_schema)
{
	struct t_eng t;
	char *c = t_case("\"kind\":\"tool_use\"", "reset_counter",
	    "{\"key\":\"k-oai\",\"limit\":null,\"node\":null}"), *s;

	t_eng_init(&t, LLM_OPENAI, NULL);
	ck_assert(asprintf(&s, "[%s]", c) > 0);
	t_script(s);
	json_object *o = t_one(&t, "k-oai", 15000);
	ck_assert_str_eq(t_s(o, "backend"), "openai");
	ck_assert_str_eq(t_s(o, "model"), T_OAI_MODEL);
	ck_assert_int_eq(op_json_int(o, "tokens_in", 0), 1200);
	ck_assert(op_json_double(o, "cost_usd", 0) > 0);
	json_object *reqs = t_requests();
	ck_assert_int_eq(json_object_array_length(reqs), 1);
	t_assert_clean_requests(reqs); /* incl. Bearer key and strict-mode schema rules */
	json_object *body = op_json_obj(json_object_array_get_idx(reqs, 0), "body");
	json_object *rf = op_json_obj(body, "response_format");
	ck_assert_str_eq(t_s(rf, "type"), "json_schema");
	ck_assert(op_json_bool(op_json_obj(rf, "json_schema"), "strict", 0));
	ck_assert_str_eq(t_s(json_object_array_get_idx(op_json_arr(body, "messages"), 0), "role"),
	    "system");
	json_object_put(reqs);
	free(s);
	free(c);
	t_eng_fini(&t);
}
END_TEST

START_TEST(t_openai_failures)
{
	static const char *const cases[][2] = {
		{"{\"kind\":\"max_tokens\"}", "finish_reason length"},
		{"{\"kind\":\"content_filter\"}", "content_filter"},
		{"{\"kind\":\"refusal\"}", "declined"},
		{"{\"kind\":\"error\",\"status\":401,\"code\":\"invalid_api_key\"}", "HTTP 401"},
		{"{\"kind\":\"error\",\"status\":404,\"code\":\"model_not_found\"}", "HTTP 404"},
		{"{\"kind\":\"hang\"}", "no answer in time"},
	};
	for (size_t i = 0; i < OP_ARRAY_LEN(cases); i++) {
		struct t_eng t;
		char s[256];
		t_eng_init(&t, LLM_OPENAI, "timeout = 1s\n");
		snprintf(s, sizeof(s), "[%s]", cases[i][0]);
		t_script(s);
		json_object *o = t_one(&t, "k-oaif", 15000);
		t_assert_fallback(o, cases[i][1]);
		ck_assert_int_eq(op_json_int(o, "calls", 0), 1);
		t_eng_fini(&t);
	}
	/* Prose instead of JSON: corrected once, then answered. */
	struct t_eng t;
	char *c = t_case("\"kind\":\"tool_use\"", "reset_counter", "{\"key\":\"k-oaic\"}"), *s;
	t_eng_init(&t, LLM_OPENAI, NULL);
	ck_assert(asprintf(&s, "[{\"kind\":\"end_turn\"},{\"kind\":\"error\",\"status\":429,"
	    "\"retry_after\":\"1\"},%s]", c) > 0);
	t_script(s);
	json_object *o = t_one(&t, "k-oaic", 15000);
	ck_assert_str_eq(t_s(o, "backend"), "openai");
	ck_assert_int_eq(op_json_int(o, "calls", 0), 3);
	json_object *reqs = t_requests();
	t_assert_clean_requests(reqs);
	json_object *msgs = op_json_arr(op_json_obj(json_object_array_get_idx(reqs, 1), "body"),
	    "messages");
	ck_assert_int_eq(json_object_array_length(msgs), 4); /* system, user, assistant, user */
	ck_assert_ptr_nonnull(strstr(t_s(json_object_array_get_idx(msgs, 3), "content"),
	    "not a JSON object"));
	json_object_put(reqs);
	free(s);
	free(c);
	t_eng_fini(&t);
}
END_TEST

START_TEST(t_unreachable_server)
{
	struct t_eng t;

	t_eng_init(&t, LLM_ANTHROPIC, NULL);
	llm_engine_free(t.e);
	struct llm_conf lc = t.conf;
	/* A port nothing listens on: connection refused, retried, then the rules. */
	snprintf(lc.base_url, sizeof(lc.base_url), "http://127.0.0.1:1");
	t.e = llm_engine_new(t.base, &lc, T->key);
	json_object *o = t_one(&t, "k-unreach", 20000);
	t_assert_fallback(o, "transport error");
	ck_assert_int_eq(op_json_int(o, "calls", 0), 3);
	ck_assert_ptr_null(strstr(json_object_to_json_string(o), T->key));
	t_eng_fini(&t);
}
END_TEST

/* ------------------------------------------------------------------ */
/* e2e: operatord with backend = anthropic at llmsrv */

static int
t_all_ready(void)
{
	json_object *s = h_status();
	json_object *ws = op_json_arr(s, "workers");
	int ok = ws != NULL && json_object_array_length(ws) == 5;

	for (size_t i = 0; ok && i < json_object_array_length(ws); i++)
		ok = !strcmp(op_json_str(json_object_array_get_idx(ws, i), "state", ""), "ready");
	json_object_put(s);
	return ok;
}

static void
t_e2e_start(void)
{
	int ok;

	T->e2e_ready = 0;
	t_srv_start();
	if (T->srv_port == 0)
		return;
	h_env_start();
	if (H->setup_failed)
		return;
	/* The harness starts operatord with the rules backend; restart it with
	 * the model backend pointed at llmsrv (same ledger, same runtime dir). */
	kill(H->od_pid, SIGTERM);
	int64_t end = op_mono_ms() + 20000;
	while (op_mono_ms() < end && waitpid(H->od_pid, NULL, WNOHANG) == 0)
		op_sleep_ms(50);
	h_kill_wait(&H->od_pid, SIGKILL);
	FILE *f = fopen(H->conf, "a");
	if (f == NULL) {
		H->setup_failed = 1;
		return;
	}
	fprintf(f, "\n[diagnoser]\nbackend = anthropic\nmodel = %s\nbase_url = http://127.0.0.1:%d\n"
	    "api_key_env = %s\ntimeout = 10s\nmax_calls_per_hour = 100\n"
	    "require_approval_on_disagreement = true\n", T_MODEL, T->srv_port, T_KEY_ENV);
	fclose(f);
	char *argv[] = {(char *)h_bin("operatord"), "--config", H->conf, NULL};
	H->od_pid = h_spawn(argv, "operatord.log");
	H_WAIT(ok, 60000, t_all_ready());
	if (!ok) {
		h_dump("operatord with backend = anthropic did not become ready");
		H->setup_failed = 1;
		return;
	}
	T->e2e_ready = 1;
}

static void
t_e2e_stop(void)
{
	h_env_stop();
	t_srv_stop();
}

static void
t_e2e_begin(const char *name)
{
	ck_assert_msg(T->e2e_ready && !H->setup_failed, "the environment did not start (see stderr)");
	h_test_begin(name);
}

static void
t_prepare_key(const char *key)
{
	int ok;

	H_CHECK(h_set_limit(0, key, 100000), "PUT /api/limits/%s failed", key);
	H_WAIT(ok, H_WAIT_MS, h_nodes_cover_window());
	H_CHECK(ok, "rlnode uptime never covered the window");
}

static void
t_inject_drift(const char *key)
{
	char k[128], *err = NULL;
	json_object *res = NULL;

	snprintf(k, sizeof(k), "key=%s", key);
	int rc = h_opsend(&res, &err, "chaos", "inject", "counter_drift", k, "ttl=30s", NULL);
	H_CHECK(rc == 0, "opsend chaos inject counter_drift %s exited %d: %s", k, rc, err ? err : "");
	json_object_put(res);
	free(err);
}

static int64_t
t_wait_ticket(const char *entity, int64_t since)
{
	int64_t tid = 0;
	int ok;

	H_WAIT(ok, H_WAIT_MS, h_ev_refresh() && (tid = h_ev_ticket("counter_drift", entity, since)) > 0);
	H_CHECK(ok, "no counter_drift ticket for %s", entity);
	return tid;
}

static json_object *
t_wait_terminal(int64_t tid, int64_t since)
{
	json_object *ev = NULL;
	int ok;

	H_WAIT(ok, T_LOOP_MS, h_ev_refresh() && (ev = h_ev_terminal(tid, since)) != NULL);
	H_CHECK(ok, "ticket %lld reached no terminal state", (long long)tid);
	return ev;
}

/* Events of a type for a ticket, in order. */
static size_t
t_events(const char *type, int64_t tid, int64_t since, json_object **out, size_t max)
{
	size_t n = 0;

	for (size_t i = 0; i < json_object_array_length(h_evs) && n < max; i++) {
		json_object *e = json_object_array_get_idx(h_evs, i);
		if (h_ev_seq(e) > since && op_json_int(e, "ticket", 0) == tid &&
		    !strcmp(op_json_str(e, "type", ""), type))
			out[n++] = e;
	}
	return n;
}

START_TEST(t_e2e_llm_counter_drift)
{
	const char *K = "llm-drift";
	char *c;

	t_e2e_begin("e2e_llm_counter_drift");
	t_reset();
	/* An overloaded answer first (its message echoes the key: it must be
	 * scrubbed from the log), then the model's plan. */
	c = t_case("\"kind\":\"tool_use\"", "reset_counter", "{\"key\":\"llm-drift\"}");
	const char *cases[] = {"{\"kind\":\"error\",\"status\":529,\"echo_key\":true}", c};
	t_script_e2e(K, cases, 2);
	t_prepare_key(K);
	pid_t ld = h_load_start(K, 40, 7);
	int64_t since = h_last_seq();
	t_inject_drift(K);
	int64_t tid = t_wait_ticket(K, since);
	json_object *term = t_wait_terminal(tid, since);
	h_load_stop(ld);
	H_CHECK(!strcmp(op_json_str(term, "type", ""), "ticket_resolved"),
	    "ticket %lld ended %s", (long long)tid, op_json_str(term, "type", ""));

	json_object *d[4], *x[4], *v[4];
	H_CHECK(t_events("diagnosis", tid, since, d, 4) >= 1, "no diagnosis event");
	json_object *dd = h_ev_data(d[0]);
	H_CHECK(!strcmp(op_json_str(dd, "backend", ""), "anthropic"), "diagnosis backend %s (%s)",
	    op_json_str(dd, "backend", ""), op_json_str(dd, "fallback_reason", ""));
	H_CHECK(!strcmp(op_json_str(dd, "model", ""), T_MODEL), "model %s", op_json_str(dd, "model", ""));
	/* the 529 carried no usage; the answer 1200 in, 350 out */
	H_CHECK(op_json_int(dd, "tokens_in", 0) == 1200 && op_json_int(dd, "tokens_out", 0) == 350,
	    "tokens %lld/%lld", (long long)op_json_int(dd, "tokens_in", 0),
	    (long long)op_json_int(dd, "tokens_out", 0));
	H_CHECK(op_json_int(dd, "agreed", 0) == 1, "agreed %lld", (long long)op_json_int(dd, "agreed", 0));
	H_CHECK(op_json_double(dd, "cost_usd", 0) > 0, "no cost");
	H_CHECK(!strcmp(op_json_str(dd, "primary_diagnosis", ""),
	    "retried increments double-counted during a Redis stall"), "not the model's diagnosis");
	size_t nx = t_events("action_executed", tid, since, x, 4);
	H_CHECK(nx >= 1 && !strcmp(op_json_str(h_ev_data(x[0]), "action", ""), "reset_counter") &&
	    !strcmp(op_json_str(op_json_obj(h_ev_data(x[0]), "params"), "key", ""), K),
	    "reset_counter key=%s not executed", K);
	H_CHECK(t_events("verification", tid, since, v, 4) >= 1 &&
	    !strcmp(op_json_str(h_ev_data(v[0]), "result", ""), "success"), "not verified");

	/* opsend ticket show carries the diagnoses rows. */
	json_object *tk = h_ticket(tid);
	H_CHECK(tk != NULL && strstr(json_object_to_json_string(tk), "anthropic") != NULL,
	    "opsend ticket show lacks the model's diagnosis: %s", json_object_to_json_string(tk));
	json_object_put(tk);

	json_object *reqs = t_requests_for(K);
	H_CHECK(json_object_array_length(reqs) == 2, "%zu requests to llmsrv",
	    json_object_array_length(reqs));
	t_assert_clean_requests(reqs);
	const char *user = op_json_str(json_object_array_get_idx(op_json_arr(op_json_obj(
	    json_object_array_get_idx(reqs, 0), "body"), "messages"), 0), "content", "");
	H_CHECK(strstr(user, K) && strstr(user, "Fresh observation") && strstr(user, "update_limit"),
	    "the prompt lacks the ticket, observation or catalogue");
	json_object_put(reqs);
	free(c);
	h_test_end();
}
END_TEST

START_TEST(t_e2e_never_executes_invalid_plan)
{
	const char *K = "llm-bogus";
	char *a, *b;

	t_e2e_begin("e2e_never_executes_invalid_plan");
	t_reset();
	a = t_case("\"kind\":\"tool_use\"", "restart_redis", "{\"force\":true}");
	b = t_case("\"kind\":\"tool_use\"", "update_limit", "{\"key\":\"llm-bogus\",\"limit\":-100}");
	const char *cases[] = {a, b};
	t_script_e2e(K, cases, 2);
	t_prepare_key(K);
	pid_t ld = h_load_start(K, 40, 7);
	int64_t since = h_last_seq();
	t_inject_drift(K);
	int64_t tid = t_wait_ticket(K, since);
	t_wait_terminal(tid, since);
	h_load_stop(ld);
	json_object *d[4], *x[8];
	H_CHECK(t_events("diagnosis", tid, since, d, 4) >= 1, "no diagnosis event");
	json_object *dd = h_ev_data(d[0]);
	H_CHECK(!strcmp(op_json_str(dd, "backend", ""), "rules") &&
	    strstr(op_json_str(dd, "fallback_reason", ""), "not in the action catalogue"),
	    "backend %s, fallback_reason %s", op_json_str(dd, "backend", ""),
	    op_json_str(dd, "fallback_reason", ""));
	size_t nx = t_events("action_executed", tid, since, x, 8);
	for (size_t i = 0; i < nx; i++) {
		const char *name = op_json_str(h_ev_data(x[i]), "action", "");
		H_CHECK(strcmp(name, "restart_redis") != 0 && strcmp(name, "update_limit") != 0,
		    "the model's invalid action %s was executed", name);
	}
	json_object *reqs = t_requests_for(K);
	H_CHECK(json_object_array_length(reqs) == 2, "%zu requests (one correction expected)",
	    json_object_array_length(reqs));
	t_assert_clean_requests(reqs);
	json_object_put(reqs);
	free(a);
	free(b);
	h_test_end();
}
END_TEST

START_TEST(t_e2e_disagreement_waits_for_approval)
{
	const char *K = "llm-disagree";
	char *c;

	t_e2e_begin("e2e_disagreement_waits_for_approval");
	t_reset();
	/* A plan must fit its ticket (issue 9): re-publishing the limit remedies
	 * ghost allowing, where the rules would resync the stale node instead. */
	c = t_case("\"kind\":\"tool_use\"", "update_limit",
	    "{\"key\":\"llm-disagree\",\"limit\":0,\"node\":null}");
	const char *cases[] = {c};
	t_script_e2e(K, cases, 1);
	t_prepare_key(K);
	pid_t ld = h_load_start(K, 40, 7);
	int64_t since = h_last_seq();
	char *gerr = NULL;
	H_CHECK(h_opsend(NULL, &gerr, "chaos", "inject", "ghost_allowing", "key=llm-disagree",
	    "ttl=60s", NULL) == 0, "inject ghost_allowing: %s", gerr ? gerr : "");
	free(gerr);
	int64_t tid = 0;
	json_object *w = NULL;
	int ok;
	H_WAIT(ok, H_WAIT_MS, h_ev_refresh() &&
	    (tid = h_ev_ticket("ghost_allowing", K, since)) > 0);
	H_CHECK(ok, "no ghost_allowing ticket for %s", K);
	H_WAIT(ok, T_LOOP_MS, h_ev_refresh() && (w = h_ev_find("action_awaiting_approval", tid,
	    since)) != NULL);
	h_load_stop(ld);
	H_CHECK(ok, "the disagreeing plan did not wait for approval in execute mode");
	H_CHECK(!strcmp(op_json_str(h_ev_data(w), "action", ""), "update_limit"), "awaiting %s",
	    op_json_str(h_ev_data(w), "action", ""));
	json_object *d[2], *x[2];
	H_CHECK(t_events("diagnosis", tid, since, d, 2) >= 1, "no diagnosis event");
	H_CHECK(op_json_int(h_ev_data(d[0]), "agreed", 1) == 0 &&
	    op_json_bool(h_ev_data(d[0]), "require_approval", 0), "agreed/require_approval wrong");
	H_CHECK(t_events("action_executed", tid, since, x, 2) == 0, "executed without approval");
	/* Reject it so the ticket closes. */
	char aid[32], *err = NULL;
	snprintf(aid, sizeof(aid), "%lld", (long long)op_json_int(h_ev_data(w), "action_id", 0));
	h_opsend(NULL, &err, "reject", aid, "--reason", "test", NULL);
	free(err);
	free(c);
	h_test_end();
}
END_TEST

static char *
t_slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *b = NULL;
	size_t cap = 0, n = 0, r;

	*len = 0;
	if (f == NULL)
		return NULL;
	do {
		if (n + 65536 > cap) {
			cap = (n + 65536) * 2;
			b = realloc(b, cap);
		}
		r = fread(b + n, 1, 65536, f);
		n += r;
	} while (r > 0);
	fclose(f);
	*len = n;
	return b;
}

static int
t_file_has(const char *path, const char *needle)
{
	size_t len;
	char *b = t_slurp(path, &len);
	int found = b != NULL && memmem(b, len, needle, strlen(needle)) != NULL;

	free(b);
	return found;
}

START_TEST(t_e2e_no_key_anywhere)
{
	char path[512], *out = NULL, *err = NULL;

	t_e2e_begin("e2e_no_key_anywhere");
	/* The daemon's log (every process: supervisor and workers). */
	snprintf(path, sizeof(path), "%s/operatord.log", H->dir);
	H_CHECK(!t_file_has(path, T->key), "the API key is in %s", path);
	size_t len;
	char *log = t_slurp(path, &len);
	H_CHECK(log != NULL && memmem(log, len, "[redacted]", 10) != NULL,
	    "the echoed key was not logged as [redacted] (did the scrubbing run?)");
	free(log);
	/* The events, as optail --json prints them. */
	char *argv[] = {(char *)h_bin("optail"), "--runtime-dir", H->run, "--json", NULL};
	int rc = h_run(argv, 30000, &out, &err);
	H_CHECK(rc == 0 && out != NULL && strlen(out) > 0, "optail --json failed: %s", err ? err : "");
	H_CHECK(strstr(out, T->key) == NULL, "the API key is in optail --json output");
	H_CHECK(strstr(out, "\"backend\":\"anthropic\"") != NULL || strstr(out, "anthropic") != NULL,
	    "no model diagnosis in the events");
	free(out);
	free(err);
	/* The ledger and anything else in the state directory (WAL included). */
	DIR *dir = opendir(H->state);
	struct dirent *de;
	int files = 0;
	H_CHECK(dir != NULL, "no state dir %s", H->state);
	while ((de = readdir(dir)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", H->state, de->d_name);
		H_CHECK(!t_file_has(path, T->key), "the API key is in %s", path);
		files++;
	}
	closedir(dir);
	H_CHECK(files > 0, "nothing in the state dir");
	snprintf(path, sizeof(path), "%s/ledger.db", H->state);
	H_CHECK(access(path, R_OK) == 0, "no ledger at %s", path);
	h_test_end();
}
END_TEST

/* ------------------------------------------------------------------ */

static Suite *
llm_suite(int e2e)
{
	Suite *s = suite_create("llm");
	TCase *tc;

	tc = tcase_create("unit");
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, t_conf_defaults_and_errors);
	tcase_add_test(tc, t_conf_key_file_mode);
	tcase_add_test(tc, t_scrub);
	tcase_add_test(tc, t_schema_from_catalogue);
	tcase_add_test(tc, t_prompt_contents);
	tcase_add_test(tc, t_compact_entity_first);
	tcase_add_test(tc, t_check_answer);
	tcase_add_test(tc, t_agreement_and_cost);
	tcase_add_test(tc, t_parse_responses);
	suite_add_tcase(s, tc);

	tc = tcase_create("engine");
	tcase_add_unchecked_fixture(tc, t_eng_fixture_start, t_eng_fixture_stop);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, t_anthropic_tool_use);
	tcase_add_test(tc, t_anthropic_end_turn_then_tool);
	tcase_add_test(tc, t_anthropic_out_of_bounds_corrected);
	tcase_add_test(tc, t_out_of_catalogue_falls_back);
	tcase_add_test(tc, t_coercion_and_disagreement);
	tcase_add_test(tc, t_stop_reasons_fall_back);
	tcase_add_test(tc, t_permanent_errors_fall_back);
	tcase_add_test(tc, t_rate_limit_retry_after);
	tcase_add_test(tc, t_server_errors_retry);
	tcase_add_test(tc, t_malformed_and_empty);
	tcase_add_test(tc, t_hung_connection_times_out);
	tcase_add_test(tc, t_cache_by_fingerprint);
	tcase_add_test(tc, t_hourly_budget);
	tcase_add_test(tc, t_several_in_flight);
	tcase_add_test(tc, t_key_scrubbed_from_errors);
	tcase_add_test(tc, t_wrong_key_is_401);
	tcase_add_test(tc, t_openai_json_schema);
	tcase_add_test(tc, t_openai_failures);
	tcase_add_test(tc, t_unreachable_server);
	suite_add_tcase(s, tc);

	if (e2e) {
		tc = tcase_create("e2e");
		tcase_add_unchecked_fixture(tc, t_e2e_start, t_e2e_stop);
		tcase_set_timeout(tc, T_TCASE_TIMEOUT);
		tcase_add_test(tc, t_e2e_llm_counter_drift);
		tcase_add_test(tc, t_e2e_never_executes_invalid_plan);
		tcase_add_test(tc, t_e2e_disagreement_waits_for_approval);
		tcase_add_test(tc, t_e2e_no_key_anywhere); /* last: scans what the others left */
		suite_add_tcase(s, tc);
	}
	return s;
}

int
main(void)
{
	int e2e = getenv("OPERATORD_BIN") != NULL && getenv("CHECK_LLM_NO_E2E") == NULL;
	unsigned char rnd[12];
	FILE *f;

	if (getenv("LLMSRV_BIN") == NULL) {
		fprintf(stderr, "check_llm: set LLMSRV_BIN\n");
		return 1;
	}
	op_http_global_init();
	T = mmap(NULL, sizeof(*T), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (T == MAP_FAILED)
		return 1;
	memset(T, 0, sizeof(*T));
	/* A fresh key per run, so finding it anywhere means it leaked. */
	memset(rnd, 0, sizeof(rnd));
	if ((f = fopen("/dev/urandom", "rb")) != NULL) {
		if (fread(rnd, 1, sizeof(rnd), f) != sizeof(rnd))
			rnd[0] = (unsigned char)getpid();
		fclose(f);
	}
	strcpy(T->key, "sk-ant-test-");
	for (size_t i = 0; i < sizeof(rnd); i++)
		sprintf(T->key + strlen(T->key), "%02x", rnd[i]);
	setenv(T_KEY_ENV, T->key, 1);
	if (e2e)
		h_init();

	SRunner *sr = srunner_create(llm_suite(e2e));
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	if (T->dir[0]) {
		char logp[256];
		snprintf(logp, sizeof(logp), "%s/llmsrv.log", T->dir);
		unlink(logp);
		snprintf(logp, sizeof(logp), "%s/llmsrv.port", T->dir);
		unlink(logp);
		rmdir(T->dir);
	}
	return failed == 0 ? 0 : 1;
}
