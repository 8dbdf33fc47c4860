ea_add_test(test_tlv SOURCES test_tlv.c TIMEOUT 60)
ea_add_test(test_applet SOURCES test_applet.c TIMEOUT 300)
ea_add_test(test_policy SOURCES test_policy.c TIMEOUT 300)
