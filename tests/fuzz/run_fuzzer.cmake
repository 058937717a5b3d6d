# SPDX-License-Identifier: MIT
# Run one libFuzzer target for a bounded time (ctest "soak" label), from a
# scratch copy of its checked-in seed corpus so the source tree is never
# written. Crash, leak and timeout inputs are saved in WORK/artifacts/.
# Variables: FUZZER (executable), SEEDS (corpus dir), WORK (scratch dir),
# SECONDS (time budget).
file(REMOVE_RECURSE ${WORK}/corpus)
file(MAKE_DIRECTORY ${WORK}/corpus ${WORK}/artifacts)
file(GLOB _seeds ${SEEDS}/*)
file(COPY ${_seeds} DESTINATION ${WORK}/corpus)
execute_process(
  COMMAND ${FUZZER} -max_total_time=${SECONDS} -timeout=10 -rss_limit_mb=2048
          -print_final_stats=1 -artifact_prefix=${WORK}/artifacts/
          ${WORK}/corpus
  RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "${FUZZER} failed (exit ${rc}); inputs in ${WORK}/artifacts/")
endif()
