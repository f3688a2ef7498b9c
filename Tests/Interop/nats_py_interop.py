"""A plain NATS client (nats-py) on the other side of the EventBus's CloudEvents NATS binding.

    python nats_py_interop.py publish URL SUBJECT   publish one event with CloudEvents headers to JetStream
    python nats_py_interop.py read URL SUBJECT      read the first message on SUBJECT from the stream, print it as JSON

Used by Tests/EventBusJetStreamTests/InteropTests.swift, with the project's .venv (deploy/install-deps.sh
installs nats-py there).
"""
import asyncio
import json
import sys

import nats


async def main() -> None:
    mode, url, subject = sys.argv[1], sys.argv[2], sys.argv[3]
    connection = await nats.connect(url)
    jetstream = connection.jetstream()
    if mode == "publish":
        headers = {
            "ce-specversion": "1.0",
            "ce-id": "py-event-1",
            "ce-source": "/python/orders",
            "ce-type": "com.example.order.created",
            "ce-time": "2026-11-23T10:15:30.123456789Z",
            "content-type": "application/json",
            "ce-tenant": "acme",
            "ce-correlationid": "corr-py",
            "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "Nats-Msg-Id": "py-event-1",
        }
        ack = await jetstream.publish(subject, b'{"order":"py-1"}', headers=headers)
        print(json.dumps({"stream": ack.stream, "seq": ack.seq}))
    elif mode == "read":
        subscription = await jetstream.subscribe(subject, ordered_consumer=True)
        message = await subscription.next_msg(timeout=10)
        print(json.dumps({"subject": message.subject, "headers": dict(message.headers or {}), "data": message.data.decode()}))
    else:
        raise SystemExit(f"unknown mode {mode}")
    await connection.close()


asyncio.run(main())
