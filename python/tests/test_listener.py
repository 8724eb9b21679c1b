"""multiproc.connection.Listener/Client between processes, and with CPython's own Listener
and Client on the other side (the same wire format and authentication handshake)."""

import multiprocessing
import multiprocessing.connection as cpython
import threading

import multiproc
import multiproc.connection as ours
import pytest

from test_primitives import T, finish, start

KEYS = [None, b"secret"]


def client_child(address, authkey, use_ours):
    mod = ours if use_ours else cpython
    conn = mod.Client(address, authkey=authkey)
    msg = conn.recv()
    conn.send_bytes(b"y" * len(msg["payload"]))
    conn.send({"echo": msg["n"]})
    conn.close()


@pytest.mark.parametrize("family", ours.families)
@pytest.mark.parametrize("authkey", KEYS)
@pytest.mark.parametrize("client_is_ours", [True, False])
def test_our_listener(ctx, family, authkey, client_is_ours):
    with ours.Listener(family=family, authkey=authkey) as listener:
        p = start(ctx, client_child, listener.address, authkey, client_is_ours)
        conn = listener.accept()
        assert isinstance(conn, multiproc.Connection)
        conn.send({"n": 7, "payload": b"x" * 300_000})
        assert conn.poll(T)
        assert conn.recv_bytes() == b"y" * 300_000
        assert conn.poll(T)
        assert conn.recv() == {"echo": 7}
        assert conn.poll(T)
        with pytest.raises(EOFError):
            conn.recv()
        conn.close()
        finish(p)


@pytest.mark.parametrize("family", ours.families)
@pytest.mark.parametrize("authkey", KEYS)
def test_our_client_to_cpython_listener(family, authkey):
    listener = cpython.Listener(family=family, authkey=authkey)
    got = []
    # Connecting (with a key: the handshake) needs the listener's accept at the same time.
    t = threading.Thread(target=lambda: got.append(ours.Client(listener.address,
                                                               authkey=authkey)))
    t.start()
    server = listener.accept()
    t.join(T)
    client = got[0]
    client.send([1, "two", b"3"])
    assert server.poll(T) and server.recv() == [1, "two", b"3"]
    server.send_bytes(b"z" * 100_000)
    assert client.poll(T) and client.recv_bytes() == b"z" * 100_000
    client.close()
    assert server.poll(T)
    with pytest.raises(EOFError):
        server.recv()
    server.close()
    listener.close()


def test_wrong_authkey_is_refused_and_the_listener_goes_on():
    listener = ours.Listener(authkey=b"right")
    t = threading.Thread(target=lambda: pytest.raises(
        multiprocessing.AuthenticationError, cpython.Client, listener.address,
        authkey=b"wrong"), daemon=True)
    t.start()
    with pytest.raises(multiprocessing.AuthenticationError):
        listener.accept()
    t.join(T)
    got = []
    t = threading.Thread(target=lambda: got.append(cpython.Client(listener.address,
                                                                  authkey=b"right")))
    t.start()
    conn = listener.accept()
    t.join(T)
    got[0].send("in")
    assert conn.poll(T) and conn.recv() == "in"
    listener.close()
    with pytest.raises(OSError, match="closed"):
        listener.accept()


def test_bad_addresses():
    with pytest.raises(ValueError):
        ours.Listener(family="AF_PIPE")
    with pytest.raises(ValueError):
        ours.Client(42)
    with pytest.raises(TypeError):
        ours.Listener(authkey="not bytes")
    with pytest.raises(FileNotFoundError):
        ours.Client("/nonexistent/multiproc-listener")
    with ours.Listener(("127.0.0.1", 0)) as listener:
        host, port = listener.address
        assert host == "127.0.0.1" and port > 0
