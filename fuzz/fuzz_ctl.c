/* libFuzzer target for what a control client sends: a byte stream of
 * length-prefixed frames (protocol/frame.c), each decoded (protocol/msg.c)
 * and, when it is a request, looked up in the command table (protocol/ctl.c)
 * the way supervisor/control.c reads ctl.sock. Run it with
 *   scripts/fuzz.sh ctl 60 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "common/jsonutil.h"
#include "protocol/ctl.h"
#include "protocol/frame.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char err[256];
	size_t off = 0;

	while (size - off >= OP_FRAME_HDR) {
		int64_t n = op_frame_len(data + off, err, sizeof(err));
		if (n < 0)
			break; /* the daemon says why and hangs up */
		if ((uint64_t)n > size - off - OP_FRAME_HDR)
			break; /* a partial frame: the daemon waits for the rest */
		off += OP_FRAME_HDR;
		struct op_msg m;
		if (op_msg_decode(data + off, (size_t)n, &m, err, sizeof(err)) == 0) {
			if (m.type == OP_MSG_REQUEST) {
				const struct op_ctl_cmd_info *c = op_ctl_lookup(op_json_str(m.body, "cmd", ""));
				json_object *args = op_json_arr(m.body, "args");
				if (c != NULL)
					(void)op_ctl_mutates(c, args ? json_object_array_length(args) : 0);
			}
			op_msg_clear(&m);
		} else if (strlen(err) == 0) {
			__builtin_trap(); /* every refusal must say why */
		}
		off += (size_t)n;
	}
	return 0;
}
