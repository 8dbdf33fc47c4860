# Platform SCP03 session core (common/scp03.c): the spec's §7.8 worked vector
# byte for byte, both sides against each other, and refusal of tampered,
# replayed, reordered and truncated frames.
ea_add_test(test_scp03 SOURCES test_scp03.c TIMEOUT 120)
