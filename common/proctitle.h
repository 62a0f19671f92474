/* proctitle: how a process shows in ps and top. A worker is exec'd with
 * argv[0] "operatord: ROLE"; op_proctitle_set makes that the whole command
 * line (the rest of argv would otherwise follow it in `ps aux`) and the
 * kernel's 15-byte comm name that top and `ps -e` show. */
#ifndef OP_PROCTITLE_H
#define OP_PROCTITLE_H

/* proctitle.c */
/* Call first in main: moves the argv strings elsewhere (argv[i] is repointed),
 * so that their original memory can later hold a title. */
void op_proctitle_init(int argc, char **argv);
/* Writes title over the original argv area (truncated to fit) and sets the
 * comm name (truncated to 15 bytes). Either may be NULL to leave it. */
void op_proctitle_set(const char *title, const char *comm);

#endif
