# The sealed object store (emu/store.c).
ea_add_test(test_store SOURCES test_store.c TIMEOUT 600)
