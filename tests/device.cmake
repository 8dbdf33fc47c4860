# The device agent (`edgeauth device run`), end to end against the real
# Mosquitto broker (Debian's mosquitto + mosquitto-clients, started by the
# script on a free port) and chips made by edgeauth-se init, in-process
# (emu:) and over an edgeauth-se serve daemon (unix:). Needs bin/edgeauth,
# bin/edgeauth-se, lib/ossl-modules/edgeauth.so, mosquitto, mosquitto_sub,
# mosquitto_pub, jq and the openssl CLI.
add_test(NAME test_device COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/test_device.sh ${CMAKE_BINARY_DIR})
set_tests_properties(test_device PROPERTIES TIMEOUT 600 LABELS device
  ENVIRONMENT "ASAN_OPTIONS=detect_leaks=1:abort_on_error=0;UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1")
