# Known-answer tests: the external vectors (../shared/vectors, read in place,
# never copied) pushed through the emulator's APDU path.
ea_add_test(test_vectors SOURCES test_vectors.c TIMEOUT 900)
