# The OEM CA (pki/ca.c, pki/audit.c) and chain verification (pki/verify.c):
# profile field by field, CSR refusals, serial uniqueness, revocation and
# CRLs, the audit chain, x509-limbo; the openssl CLI judges our certificates.
ea_add_test(test_pki SOURCES test_pki.c TIMEOUT 600 LABELS pki)

# `edgeauth ca ...` end to end, including a CA whose intermediate key is in
# an emulated SE. Needs bin/edgeauth and bin/edgeauth-se.
add_test(NAME test_ca_cli COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/test_ca_cli.sh ${CMAKE_BINARY_DIR}/bin)
set_tests_properties(test_ca_cli PROPERTIES TIMEOUT 600 LABELS "pki;cli"
  ENVIRONMENT "ASAN_OPTIONS=detect_leaks=1:abort_on_error=0;UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1")
