/* notify: readiness and status for systemd (Type=notify). */
#include <systemd/sd-daemon.h>

#include "common/log.h"
#include "supervisor/od.h"

void
notify_systemd(const char *state)
{
	int rc = sd_notify(0, state);

	if (rc < 0)
		log_warn("sd_notify: error %d", rc);
}
