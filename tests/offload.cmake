# TLS offload (issue 8): s_client with the provider against s_server -Verify 1,
# each offload part off and on, checked through the provider's APDU log
# (test_offload.sh); the SE's TLS 1.2 PRF against OpenSSL's TLS1-PRF on the
# NIST vectors (test_offload_prf.c, skipped without ../shared/vectors).
add_test(NAME test_offload COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/test_offload.sh ${CMAKE_BINARY_DIR})
set_tests_properties(test_offload PROPERTIES TIMEOUT 300 LABELS provider
  ENVIRONMENT "ASAN_OPTIONS=detect_leaks=1:abort_on_error=0;UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1")
ea_add_test(test_offload_prf SOURCES test_offload_prf.c TIMEOUT 300 LABELS provider)
