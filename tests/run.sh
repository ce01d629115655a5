#!/bin/sh
# Runs each test binary given, shows its cmocka output, and ends with one line of
# totals: "tests: N passed, N failed, N skipped". Exits non-zero when any test
# failed or a binary died without reporting; a skip (cmocka's skip(), always
# with its reason in the output) is counted and shown, never hidden.
set -u
passed=0; failed=0; skipped=0; broken=""
for t in "$@"; do
    out=$("$t" 2>&1); rc=$?
    printf '%s\n' "$out"
    p=$(printf '%s\n' "$out" | sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' | tail -1)
    f=$(printf '%s\n' "$out" | sed -n 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p' | tail -1)
    k=$(printf '%s\n' "$out" | sed -n 's/^\[  SKIPPED \] \([0-9]*\) test.*/\1/p' | tail -1)
    passed=$((passed + ${p:-0})); failed=$((failed + ${f:-0})); skipped=$((skipped + ${k:-0}))
    if [ $rc -ne 0 ] && [ -z "$f" ]; then broken="$broken $t"; failed=$((failed + 1)); fi
done
[ -n "$broken" ] && echo "binaries that exited without a cmocka report:$broken"
echo "tests: $passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
