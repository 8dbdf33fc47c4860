# Platform SCP03 session core (common/scp03.c): the spec's §7.8 worked vector
# byte for byte, both sides against each other, and refusal of tampered,
# replayed, reordered and truncated frames.
ea_add_test(test_scp03 SOURCES test_scp03.c TIMEOUT 120)
# The card side in the emulator: the same vector answered by the chip, the
# tamper/replay/reorder/truncation refusals with no effect on the store, the
# SetPlatformSCPRequest REQUIRED lock (persistent, fail closed), key files.
ea_add_test(test_scp03_card SOURCES test_scp03_card.c TIMEOUT 300)
# A signing session (CLI and openssl through the provider) behind a recording
# proxy: nothing of the payload in clear under SCP03, all of it without;
# a flipped bit in an answer ends the channel.
add_test(NAME test_scp03_capture COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/test_scp03_capture.sh ${CMAKE_BINARY_DIR})
set_tests_properties(test_scp03_capture PROPERTIES TIMEOUT 300 LABELS scp03)
