# T=1 over I2C (UM11225): frame codec, card side, host engine, the t1-tcp
# server row and transports (in-process loopback and real sockets).
ea_add_test(test_t1 SOURCES test_t1.c TIMEOUT 300)
