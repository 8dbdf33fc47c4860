# The demo of `make demo` (scripts/demo.sh) runs in CI too, on the check build:
# every step must behave as it says, or it exits non-zero.
add_test(NAME test_demo COMMAND bash ${CMAKE_SOURCE_DIR}/scripts/demo.sh ${CMAKE_BINARY_DIR})
set_tests_properties(test_demo PROPERTIES TIMEOUT 300 LABELS demo
  ENVIRONMENT "ASAN_OPTIONS=detect_leaks=1:abort_on_error=0;UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1")
