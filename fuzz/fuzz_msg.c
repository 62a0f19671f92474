/* libFuzzer target for the frame decoder (protocol/msg.c): any bytes that
 * decode must re-encode and decode to the same frame. Run it with
 *   scripts/fuzz.sh msg 60 */
#include <stddef.h>
#include <stdint.h>

#include "protocol/msg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct op_msg m;
	char err[256];

	if (op_msg_decode(data, size, &m, err, sizeof(err)) == 0) {
		/* A frame that decodes must re-encode and decode to the same thing. */
		msgpack_sbuffer sb;
		struct op_msg m2;
		msgpack_sbuffer_init(&sb);
		if (op_msg_encode(&m, &sb) == 0 &&
		    op_msg_decode(sb.data, sb.size, &m2, err, sizeof(err)) == 0) {
			if (!json_object_equal(m.body, m2.body) || m.type != m2.type || m.id != m2.id)
				__builtin_trap();
			op_msg_clear(&m2);
		}
		msgpack_sbuffer_destroy(&sb);
		op_msg_clear(&m);
	}
	return 0;
}
