/* libFuzzer target for the models' answers (workers/llm_parse.c): an
 * Anthropic Messages or OpenAI chat-completions body, with the HTTP status
 * and the backend chosen by the first byte; an answer that parses is then
 * checked against a subject's catalogue and bounds as the diagnoser does
 * (the subject chosen by the first byte too). Run it with
 *   scripts/fuzz.sh llm 60 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "subjects/subject.h"
#include "workers/llm.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The answers that take a different path: ok, rate limited, overloaded,
 * client errors, server errors. */
static const struct op_subject fuzz_rl = {.ops = &rl_subject_ops, .name = "ratelimiter"};
#ifdef OP_HAVE_TIKV
static const struct op_subject fuzz_tikv = {.ops = &tikv_subject_ops, .name = "tikv"};
#endif

static const long fuzz_statuses[] = {200, 200, 200, 200, 429, 529, 400, 401, 413, 500, 503, 408};

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct llm_http_result h;
	struct llm_result r;
	char *body;

	if (size < 1)
		return 0;
	body = malloc(size); /* the rest, NUL-terminated as llm_http hands it over */
	if (body == NULL)
		return 0;
	memcpy(body, data + 1, size - 1);
	body[size - 1] = '\0';
	memset(&h, 0, sizeof(h));
	h.status = fuzz_statuses[(data[0] >> 1) % (sizeof(fuzz_statuses) / sizeof(fuzz_statuses[0]))];
	h.body = body;
	h.len = size - 1;
	h.retry_after_ms = (data[0] & 0x80) ? 1500 : -1;
	h.request_id = "";
	h.err = "";
	llm_parse((data[0] & 1) ? LLM_OPENAI : LLM_ANTHROPIC, &h, &r);
	if (r.kind == LLM_R_OK) {
		if (r.answer == NULL)
			__builtin_trap(); /* OK must carry the diagnosis */
		(void)llm_plans_agree(r.answer, r.answer);
		char errs[1024];
		const struct op_subject *sj = &fuzz_rl;
#ifdef OP_HAVE_TIKV
		if (data[0] & 0x40)
			sj = &fuzz_tikv;
#endif
		if (llm_check_answer(sj, r.answer, errs, sizeof(errs)) != 0 && errs[0] == '\0')
			__builtin_trap(); /* a refused answer must say what was wrong */
	}
	(void)llm_cost_usd("claude-sonnet-4-5", r.tokens_in, r.tokens_out);
	llm_result_clear(&r);
	free(body);
	return 0;
}
