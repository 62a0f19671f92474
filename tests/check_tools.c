/*
 * check_tools: operatord as a package. Every installed program behaves like a
 * Unix tool (--help on stdout and exit 0, --version, a bad option: usage on
 * stderr and exit 2); the Prometheus rules pass promtool's check and unit
 * tests; systemd-analyze rates the unit's exposure at 4.0 or lower and
 * finds nothing but uninstalled files to complain about; the sysusers file
 * parses; `meson install` into a DESTDIR lays out binaries, man pages, unit,
 * sysusers file, rules and sample configuration; --check-config reports a
 * bad [alerts] section.
 *
 * Inputs from meson (tests/meson.build): TOOL_BINS ("name=path;..."),
 * OPERATORD_BIN, OP_SOURCE_ROOT, OP_BUILD_ROOT, OP_PREFIX, OP_SYSCONFDIR, OP_VERSION_STR.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/util.h"
#include "tests/harness.h"

#define T_RUN_MS 30000           /* one tool run */
#define T_INSTALL_MS 120000      /* meson install of the whole tree */
#define T_MAX_EXPOSURE 4.0       /* systemd-analyze security: "OK" or better */

static const char *
t_env(const char *name)
{
	const char *v = getenv(name);
	ck_assert_msg(v != NULL && *v, "%s is not set (run through meson test)", name);
	return v;
}

static int
t_sh(const char *cmd, char **out, char **err)
{
	char *argv[] = {"sh", "-c", (char *)cmd, NULL};
	return h_run(argv, T_RUN_MS, out, err);
}

START_TEST(t_unix_tools)
{
	char list[4096];
	op_strlcpy(list, t_env("TOOL_BINS"), sizeof(list));
	const char *version = t_env("OP_VERSION_STR");
	int n = 0;

	for (char *save = NULL, *item = strtok_r(list, ";", &save); item;
	     item = strtok_r(NULL, ";", &save)) {
		char *eq = strchr(item, '=');
		ck_assert_ptr_nonnull(eq);
		*eq = '\0';
		const char *name = item, *path = eq + 1;
		char *out = NULL, *err = NULL;
		n++;

		char *help[] = {(char *)path, "--help", NULL};
		int rc = h_run(help, T_RUN_MS, &out, &err);
		ck_assert_msg(rc == 0, "%s --help: exit %d (want 0)", name, rc);
		ck_assert_msg(out && strstr(out, "usage"), "%s --help: no usage on stdout", name);
		free(out);
		free(err);

		char *ver[] = {(char *)path, "--version", NULL};
		rc = h_run(ver, T_RUN_MS, &out, &err);
		ck_assert_msg(rc == 0, "%s --version: exit %d (want 0)", name, rc);
		ck_assert_msg(out && strstr(out, name) && strstr(out, version),
		    "%s --version printed \"%s\", want \"%s %s\"", name, out ? out : "", name, version);
		free(out);
		free(err);

		char *bad[] = {(char *)path, "--no-such-option", NULL};
		rc = h_run(bad, T_RUN_MS, &out, &err);
		ck_assert_msg(rc == 2, "%s --no-such-option: exit %d (want 2)", name, rc);
		ck_assert_msg(err && strstr(err, "usage"), "%s: bad option gives no usage on stderr",
		    name);
		ck_assert_msg(out == NULL || out[0] == '\0', "%s: bad option printed on stdout: %s",
		    name, out);
		free(out);
		free(err);
	}
	ck_assert_int_ge(n, 6);
}
END_TEST

START_TEST(t_prometheus_rules)
{
	char cmd[1024], *out = NULL, *err = NULL;
	const char *src = t_env("OP_SOURCE_ROOT");

	snprintf(cmd, sizeof(cmd), "promtool check rules '%s/etc/operatord.rules.yml'", src);
	int rc = t_sh(cmd, &out, &err);
	ck_assert_msg(rc == 0 && out && strstr(out, "SUCCESS"), "promtool check rules: exit %d\n%s%s",
	    rc, out ? out : "", err ? err : "");
	free(out);
	free(err);
	snprintf(cmd, sizeof(cmd), "cd '%s/etc' && promtool test rules operatord.rules.test.yml",
	    src);
	rc = t_sh(cmd, &out, &err);
	ck_assert_msg(rc == 0, "promtool test rules: exit %d\n%s%s", rc, out ? out : "",
	    err ? err : "");
	free(out);
	free(err);
}
END_TEST

START_TEST(t_systemd_unit)
{
	char cmd[1024], *out = NULL, *err = NULL;
	const char *src = t_env("OP_SOURCE_ROOT");

	snprintf(cmd, sizeof(cmd), "systemd-analyze security --offline=true --no-pager "
	    "'%s/etc/operatord.service' 2>&1", src);
	int rc = t_sh(cmd, &out, &err);
	const char *p = out ? strstr(out, "Overall exposure level for operatord.service:") : NULL;
	ck_assert_msg(p != NULL, "systemd-analyze security (exit %d) gave no rating:\n%s", rc,
	    out ? out : "");
	double exposure = atof(p + strlen("Overall exposure level for operatord.service:"));
	ck_assert_msg(exposure > 0 && exposure <= T_MAX_EXPOSURE,
	    "exposure %.1f, want at most %.1f", exposure, T_MAX_EXPOSURE);
	free(out);
	free(err);

	/* verify: only "not installed here" complaints are acceptable. */
	snprintf(cmd, sizeof(cmd), "systemd-analyze verify '%s/etc/operatord.service' 2>&1", src);
	t_sh(cmd, &out, &err);
	char *save = NULL;
	for (char *line = out ? strtok_r(out, "\n", &save) : NULL; line;
	     line = strtok_r(NULL, "\n", &save)) {
		int fine = strstr(line, "is not executable: No such file or directory") ||
		    strstr(line, "Command 'man ");
		ck_assert_msg(fine, "systemd-analyze verify complains: %s", line);
	}
	free(out);
	free(err);

	/* The sysusers entry parses and makes a system user named operatord. */
	char root[] = "/tmp/check_tools.XXXXXX";
	ck_assert_ptr_nonnull(mkdtemp(root));
	snprintf(cmd, sizeof(cmd), "systemd-sysusers --root='%s' --dry-run '%s/etc/operatord.sysusers' 2>&1; "
	    "rm -rf '%s'", root, src, root);
	rc = t_sh(cmd, &out, &err);
	ck_assert_msg(rc == 0 && out && strstr(out, "operatord"),
	    "systemd-sysusers --dry-run: exit %d\n%s", rc, out ? out : "");
	free(out);
	free(err);
}
END_TEST

/* operatord --check-config on a configuration with this [alerts] section. */
static int
t_check_alerts(const char *alerts, char **err)
{
	char path[] = "/tmp/check_tools_conf.XXXXXX", *out = NULL;
	int fd = mkstemp(path);
	ck_assert_int_ge(fd, 0);
	FILE *f = fdopen(fd, "w");
	fprintf(f, "[operatord]\nruntime_dir = /tmp/check_tools_run\nstate_dir = /tmp/check_tools_state\n"
	    "[subject.ratelimiter]\nredis = 127.0.0.1:6379\nnodes = http://127.0.0.1:8001\n"
	    "[alerts]\n%s\n", alerts);
	fclose(f);
	char *argv[] = {(char *)t_env("OPERATORD_BIN"), "--config", path, "--check-config", NULL};
	int rc = h_run(argv, T_RUN_MS, &out, err);
	free(out);
	unlink(path);
	return rc;
}

START_TEST(t_alerts_config)
{
	static const struct {
		const char *conf, *why;
	} bad[] = {
		{"alertmanager = ftp://127.0.0.1:9093", "[alerts] alertmanager"},
		{"alertmanager = http://127.0.0.1:9093,,http://127.0.0.1:9094", "empty URL"},
		{"alertmanager = http://127.0.0.1:9093\nresend_interval = 10ms", "[alerts] resend_interval"},
		{"alertmanager = http://127.0.0.1:9093\ntimeout = soon", "[alerts] timeout"},
		{"alertmanager = http://127.0.0.1:9093\npager = yes", "[alerts] pager: unknown key"},
		{"resend_interval = 30s", "[alerts] alertmanager: missing"},
	};
	char *err = NULL;

	for (size_t i = 0; i < OP_ARRAY_LEN(bad); i++) {
		int rc = t_check_alerts(bad[i].conf, &err);
		ck_assert_msg(rc == 1 && err && strstr(err, bad[i].why),
		    "[alerts] %s: exit %d, stderr \"%s\" (want 1 and \"%s\")", bad[i].conf, rc,
		    err ? err : "", bad[i].why);
		free(err);
		err = NULL;
	}
	int rc = t_check_alerts("alertmanager = http://127.0.0.1:9093/, https://am.example:9093\n"
	    "resend_interval = 30s\ntimeout = 2s", &err);
	ck_assert_msg(rc == 0, "a good [alerts] section was refused: %s", err ? err : "");
	free(err);
}
END_TEST

static void
t_installed(const char *dest, const char *prefix, const char *rel, int exec)
{
	char path[1024];
	struct stat st;

	if (rel[0] == '/')
		snprintf(path, sizeof(path), "%s%s", dest, rel);
	else
		snprintf(path, sizeof(path), "%s%s/%s", dest, prefix, rel);
	ck_assert_msg(stat(path, &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0,
	    "not installed: %s", path);
	if (exec)
		ck_assert_msg(st.st_mode & S_IXUSR, "not executable: %s", path);
}

START_TEST(t_install_tree)
{
	char dest[] = "/tmp/check_tools_dest.XXXXXX", cmd[2048], *out = NULL, *err = NULL;
	const char *prefix = t_env("OP_PREFIX"), *sysconf = t_env("OP_SYSCONFDIR");
	char conf[512];

	ck_assert_ptr_nonnull(mkdtemp(dest));
	snprintf(cmd, sizeof(cmd), "meson install -C '%s' --no-rebuild --quiet --destdir '%s'",
	    t_env("OP_BUILD_ROOT"), dest);
	char *argv[] = {"sh", "-c", cmd, NULL};
	int rc = h_run(argv, T_INSTALL_MS, &out, &err);
	ck_assert_msg(rc == 0, "meson install: exit %d\n%s%s", rc, out ? out : "", err ? err : "");
	free(out);
	free(err);

	static const char *const bins[] = {"sbin/operatord", "bin/opsend", "bin/optail",
		"bin/rlnode", "bin/rlload", "bin/pdsim"};
	for (size_t i = 0; i < OP_ARRAY_LEN(bins); i++)
		t_installed(dest, prefix, bins[i], 1);
	static const char *const data[] = {"share/man/man8/operatord.8", "share/man/man1/opsend.1",
		"share/man/man1/optail.1", "share/man/man1/rlnode.1", "share/man/man1/rlload.1",
		"share/man/man1/pdsim.1", "lib/systemd/system/operatord.service",
		"lib/sysusers.d/operatord.conf", "share/operatord/operatord.rules.yml"};
	for (size_t i = 0; i < OP_ARRAY_LEN(data); i++)
		t_installed(dest, prefix, data[i], 0);
	/* sysconfdir is absolute (/etc) or relative to the prefix (etc). */
	snprintf(conf, sizeof(conf), "%s/operatord/operatord.conf", sysconf);
	t_installed(dest, prefix, conf, 0);

	/* The installed daemon runs and reports its version. */
	snprintf(cmd, sizeof(cmd), "'%s%s/sbin/operatord' --version", dest, prefix);
	rc = t_sh(cmd, &out, &err);
	ck_assert_msg(rc == 0 && out && strstr(out, t_env("OP_VERSION_STR")),
	    "installed operatord --version: exit %d %s", rc, out ? out : "");
	free(out);
	free(err);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dest);
	t_sh(cmd, NULL, NULL);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("tools");
	TCase *tc = tcase_create("tools");
	tcase_set_timeout(tc, 180);
	tcase_add_test(tc, t_unix_tools);
	tcase_add_test(tc, t_prometheus_rules);
	tcase_add_test(tc, t_alerts_config);
	tcase_add_test(tc, t_systemd_unit);
	tcase_add_test(tc, t_install_tree);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
