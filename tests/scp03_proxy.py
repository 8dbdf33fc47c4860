#!/usr/bin/env python3
"""A recording (and optionally tampering) TCP proxy for the SCP03 capture test.

    scp03_proxy.py LISTEN_PORT_FILE UPSTREAM_UNIX_PATH CAPTURE_FILE [--flip-response N]

Listens on 127.0.0.1 (any free port, written to LISTEN_PORT_FILE), forwards
every connection to the Unix socket UPSTREAM_UNIX_PATH and appends every byte
seen in either direction to CAPTURE_FILE, as a probe on the bus would see
them. With --flip-response N, the Nth chunk sent back to the client that
carries more than 8 bytes gets one bit flipped (a tampered response).
"""
import os
import socket
import sys
import threading

port_file, upstream, capture = sys.argv[1:4]
flip_at = int(sys.argv[5]) if len(sys.argv) > 5 and sys.argv[4] == "--flip-response" else 0
lock = threading.Lock()
seen_rsp = [0]


def record(data):
    with lock, open(capture, "ab") as f:
        f.write(data)


def pump(src, dst, to_client):
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            if to_client and flip_at and len(data) > 8:
                with lock:
                    seen_rsp[0] += 1
                    n = seen_rsp[0]
                if n == flip_at:
                    data = data[:-3] + bytes([data[-3] ^ 0x01]) + data[-2:]
            record(data)
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def serve(client):
    up = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    up.connect(upstream)
    threading.Thread(target=pump, args=(client, up, False), daemon=True).start()
    threading.Thread(target=pump, args=(up, client, True), daemon=True).start()


lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
lsock.bind(("127.0.0.1", 0))
lsock.listen(16)
tmp = port_file + ".tmp"
with open(tmp, "w") as f:
    f.write(str(lsock.getsockname()[1]))
os.rename(tmp, port_file)
while True:
    c, _ = lsock.accept()
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    serve(c)
