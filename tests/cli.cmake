# The edgeauth CLI, end to end: real binaries, real chips in temporary
# directories, the openssl CLI as the judge. Needs bin/edgeauth and
# bin/edgeauth-se.
add_test(NAME test_cli_se COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/test_cli_se.sh ${CMAKE_BINARY_DIR}/bin)
set_tests_properties(test_cli_se PROPERTIES TIMEOUT 600 LABELS cli
  ENVIRONMENT "ASAN_OPTIONS=detect_leaks=1:abort_on_error=0;UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1")
