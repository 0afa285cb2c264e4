"""A capnet client in another language: pycapnp against schema/net.capnp.

Usage: net_client.py SCHEMA_DIR SOCKET HOST PORT BYTES
Connects to the service socket with plain Cap'n Proto (no shared memory),
opens a TCP connection through Net.tcpConnect, writes BYTES bytes with
TcpSocket.write, reads the echo back with TcpSocket.read and checks it;
then that a read with max 0 answers nothing and a read after close fails.
"""

import asyncio
import ipaddress
import os
import sys

import capnp


async def main(schema_dir, socket_path, host, port, total):
    net_capnp = capnp.load(os.path.join(schema_dir, "net.capnp"), imports=[schema_dir])
    stream = await capnp.AsyncIoStream.create_unix_connection(socket_path)
    client = capnp.TwoPartyClient(stream)
    net = client.bootstrap().cast_as(net_capnp.Net)

    remote = {"ip": ipaddress.ip_address(host).packed, "port": port}
    sock = (await net.tcpConnect(remote=remote, options={"noDelay": True})).socket
    payload = bytes((i * 31 + 7) % 251 for i in range(total))

    sent = 0
    while sent < total:
        written = (await sock.write(data=payload[sent : sent + 65536])).written
        assert written > 0, "write made no progress"
        sent += written

    echoed = bytearray()
    while len(echoed) < total:
        data = (await sock.read(max=65536)).data
        assert data, "EOF before the whole echo came back"
        echoed += data
    assert bytes(echoed) == payload, "echo differs"

    # A read with a maximum of 0 answers nothing, at once (read(2) with a
    # zero length), however much is queued.
    await sock.write(data=b"queued")
    assert (await sock.read(max=0)).data == b"", "read(max=0) returned bytes"
    # Read the echo of it: closing with bytes unread would reset the
    # connection (RFC 2525 2.17, as Linux does), and the echo server sees
    # an orderly end.
    echoed = bytearray()
    while len(echoed) < 6:
        data = (await sock.read(max=16)).data
        assert data, "EOF before the echo of 'queued'"
        echoed += data
    assert bytes(echoed) == b"queued", "echo of 'queued' differs"

    info = await sock.info()
    await sock.close()
    # Every call after close fails with `closed`, as a call on a closed fd.
    try:
        await asyncio.wait_for(sock.read(max=16), 5)
    except asyncio.TimeoutError:
        raise AssertionError("read after close hangs")
    except capnp.KjException as e:
        assert "closed:" in str(e), f"read after close: {e}"
    else:
        raise AssertionError("read after close succeeded")
    print(f"pycapnp: {total} bytes echoed over {info.state} connection")


if __name__ == "__main__":
    schema_dir, socket_path, host, port, total = sys.argv[1:6]
    asyncio.run(capnp.run(main(schema_dir, socket_path, host, int(port), int(total))))
