# JRCP_v1 server and the edgeauth-se program, end to end (real processes and
# sockets). Needs build/bin/edgeauth-se.
ea_add_test(test_jrcp SOURCES test_jrcp.c TIMEOUT 300)
add_dependencies(test_jrcp edgeauth-se)
