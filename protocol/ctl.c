#include "protocol/ctl.h"

#include <string.h>

#define OP_CTL_USAGE_COL 44 /* column where a command's description starts */

const struct op_ctl_cmd_info op_ctl_cmds[OP_CTL_NCMDS] = {
#define OP_CTL_ROW(e, n, f, a, h) [e] = {e, n, f, a, h},
	OP_CTL_COMMANDS(OP_CTL_ROW)
#undef OP_CTL_ROW
};

const struct op_ctl_cmd_info *
op_ctl_lookup(const char *name)
{
	if (name == NULL)
		return NULL;
	for (size_t i = 0; i < OP_CTL_NCMDS; i++)
		if (strcmp(op_ctl_cmds[i].name, name) == 0)
			return &op_ctl_cmds[i];
	return NULL;
}

int
op_ctl_mutates(const struct op_ctl_cmd_info *c, size_t nargs)
{
	if (!(c->flags & OP_CTL_MUTATES))
		return 0;
	/* "mode", "kill-switch", "level" alone only ask; chaos list is a read too,
	 * but one check for "chaos" keeps fault injection behind the same door. */
	return !((c->flags & OP_CTL_READ_BARE) && nargs == 0);
}

void
op_ctl_usage(FILE *f)
{
	for (size_t i = 0; i < OP_CTL_NCMDS; i++) {
		const struct op_ctl_cmd_info *c = &op_ctl_cmds[i];
		int n = fprintf(f, "  %s%s%s", c->name, c->args[0] ? " " : "", c->args);
		if (n < 0)
			return;
		if (n > OP_CTL_USAGE_COL - 2)
			fprintf(f, "\n%*s", OP_CTL_USAGE_COL, "");
		else
			fprintf(f, "%*s", OP_CTL_USAGE_COL - n, "");
		fprintf(f, "%s%s\n", c->help, (c->flags & OP_CTL_MUTATES) ? " (*)" : "");
	}
	fprintf(f, "(*) changes things: root, the daemon's user or the control group only\n");
}

void
op_ctl_names(char *buf, size_t len)
{
	size_t o = 0;

	if (len == 0)
		return;
	buf[0] = '\0';
	for (size_t i = 0; i < OP_CTL_NCMDS && o + 1 < len; i++) {
		size_t n = strlen(op_ctl_cmds[i].name);
		if (o + n + 2 > len)
			break;
		if (o > 0)
			buf[o++] = ' ';
		memcpy(buf + o, op_ctl_cmds[i].name, n);
		o += n;
		buf[o] = '\0';
	}
}
