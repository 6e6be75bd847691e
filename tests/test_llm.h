/* What binv-llm's two test files share: the engine's header and the tiny
 * synthetic checkpoint most tests use. */
#ifndef BINV_TESTS_TEST_LLM_H
#define BINV_TESTS_TEST_LLM_H

#include "llm.h"

/* 2 layers, 4 heads of 8 over 2 kv heads, vocabulary 50, separate classifier. */
static const llm_config TINY = {32, 48, 2, 4, 2, 50, 64, 0};

#endif
