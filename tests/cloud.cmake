# The OEM cloud (issue 6).
#  - test_cloud_unit: the broker-free parts (jail, audit lines, registry,
#    registry files, the plugin's session table and verdict cache), cmocka.
#  - test_cloud: the real Mosquitto broker with edgeauth_cloud.so and the
#    real mosquitto_pub / mosquitto_sub: the accept/refuse matrix with the
#    audit reasons, the topic jail (MQTT 5 and 3.1.1), live revocation
#    (measured), CRL reload, broker restart with QoS 1. Needs bin/edgeauth,
#    lib/edgeauth_cloud.so, /usr/sbin/mosquitto, mosquitto-clients, openssl;
#    installs nothing.
if(TARGET ea_cloud)
  ea_add_test(test_cloud_unit SOURCES test_cloud_unit.c ${CMAKE_SOURCE_DIR}/cloud/sessions.c
              ${CMAKE_SOURCE_DIR}/cloud/vcache.c LABELS cloud)
  target_link_libraries(test_cloud_unit PRIVATE ea_cloud)
endif()
if(TARGET edgeauth_cloud)
  add_test(NAME test_cloud COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/test_cloud.sh ${CMAKE_BINARY_DIR})
  set_tests_properties(test_cloud PROPERTIES TIMEOUT 900 LABELS cloud
    ENVIRONMENT "ASAN_OPTIONS=detect_leaks=1:abort_on_error=0;UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1")
endif()
