# The SE050 timing model and the APDU log of the emulator (--timing,
# --apdu-log; EDGEAUTH_SE_TIMING, EDGEAUTH_SE_APDU_LOG).
ea_add_test(test_timing SOURCES test_timing.c TIMEOUT 120)
