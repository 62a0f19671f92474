#include "common/proctitle.h"

#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>

/* The original argv area: contiguous strings the kernel reads as cmdline. */
static char *pt_area;
static size_t pt_len;
static char *pt_copy; /* where the argv strings live now; kept for the process' life */

void
op_proctitle_init(int argc, char **argv)
{
	size_t total = 0;

	if (argc <= 0 || argv[0] == NULL)
		return;
	/* Only the contiguous run of strings starting at argv[0] is ours to reuse. */
	char *end = argv[0];
	for (int i = 0; i < argc; i++) {
		if (argv[i] != end)
			break;
		end += strlen(argv[i]) + 1;
	}
	for (int i = 0; i < argc; i++)
		total += strlen(argv[i]) + 1;
	pt_copy = malloc(total);
	if (pt_copy == NULL)
		return;
	pt_area = argv[0];
	pt_len = (size_t)(end - argv[0]);
	char *p = pt_copy;
	for (int i = 0; i < argc; i++) {
		size_t n = strlen(argv[i]) + 1;
		memcpy(p, argv[i], n);
		argv[i] = p;
		p += n;
	}
}

void
op_proctitle_set(const char *title, const char *comm)
{
	if (title != NULL && pt_area != NULL && pt_len > 1) {
		size_t n = strlen(title);
		if (n > pt_len - 1)
			n = pt_len - 1;
		memmove(pt_area, title, n);
		/* Zero the rest: the kernel then reports title alone, with no
		 * stale arguments after it. */
		memset(pt_area + n, 0, pt_len - n);
	}
	if (comm != NULL)
		prctl(PR_SET_NAME, comm, 0, 0, 0); /* the kernel truncates to 15 bytes */
}
