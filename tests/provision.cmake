# The factory station (pki/provision.c), manifests and onboarding
# (pki/manifest.c): in-process with real emulated chips and a real CA, and
# the edgeauth CLI end to end (real binaries, one provisioning over an
# edgeauth-se serve daemon).
ea_add_test(test_provision SOURCES test_provision.c TIMEOUT 900 LABELS provision)
add_test(NAME test_provision_cli COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/test_provision_cli.sh ${CMAKE_BINARY_DIR}/bin)
set_tests_properties(test_provision_cli PROPERTIES TIMEOUT 900 LABELS provision
  ENVIRONMENT "ASAN_OPTIONS=detect_leaks=1:abort_on_error=0;UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1")
