ea_add_test(test_host SOURCES test_host.c TIMEOUT 600)
