# The OpenSSL provider (edgeauth.so), end to end: the real openssl CLI and
# curl against chips made by edgeauth-se init, in-process (emu:) and over an
# edgeauth-se serve daemon (unix:, tcp:). Needs bin/edgeauth-se, bin/edgeauth
# and lib/ossl-modules/edgeauth.so; installs nothing (no curl: those cases
# are skipped).
add_test(NAME test_provider COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/test_provider.sh ${CMAKE_BINARY_DIR})
set_tests_properties(test_provider PROPERTIES TIMEOUT 600 LABELS provider
  ENVIRONMENT "ASAN_OPTIONS=detect_leaks=1:abort_on_error=0;UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1")
