"""A plain NATS client (nats-py) on the other side of the EventBus's CloudEvents NATS binding.

    python nats_py_interop.py publish URL SUBJECT   publish one event with CloudEvents headers to JetStream
    python nats_py_interop.py publish-structured URL SUBJECT
                                                    publish two events in the binding's structured content mode
                                                    (the JSON event format as the payload): one without headers,
                                                    as CloudEvents SDKs send it, one marked by its content-type
    python nats_py_interop.py read URL SUBJECT      read the first message on SUBJECT from the stream, print it as JSON
    python nats_py_interop.py respond URL SUBJECT   answer the first core NATS request on SUBJECT (may be a
                                                    wildcard), print the request as JSON
    python nats_py_interop.py request URL SUBJECT   send one core NATS request with CloudEvents headers (retried
                                                    while nobody answers), print the reply as JSON

`ce-*` header values are percent-encoded as section 3.1.3.2 of the CloudEvents NATS protocol binding says
(space, double quote, percent and everything outside printable ASCII become %XY of their UTF-8 bytes);
`read` and `respond` print each message's headers as they were on the wire ("headers") and with the
`ce-*` values decoded ("decoded"), the way any other CloudEvents reader would decode them.

Used by Tests/EventBusJetStreamTests/InteropTests.swift, with the project's .venv (deploy/install-deps.sh
installs nats-py there).
"""
import asyncio
import json
import sys
import urllib.parse

import nats


def ce_encode(text: str) -> str:
    """Percent-encodes a CloudEvents attribute value for a NATS header (binding section 3.1.3.2)."""
    return "".join(
        character if 0x21 <= ord(character) <= 0x7E and character not in '"%'
        else "".join(f"%{byte:02X}" for byte in character.encode("utf-8"))
        for character in text
    )


def ce_decode(text: str) -> str:
    """One round of percent-decoding; invalid UTF-8 raises, as the binding says it must be rejected."""
    return urllib.parse.unquote(text, errors="strict")


def describe(message) -> dict:
    headers = dict(message.headers or {})
    decoded = {name: ce_decode(value) if name.lower().startswith("ce-") else value for name, value in headers.items()}
    return {"subject": message.subject, "headers": headers, "decoded": decoded, "data": message.data.decode()}


async def main() -> None:
    mode, url, subject = sys.argv[1], sys.argv[2], sys.argv[3]
    connection = await nats.connect(url)
    jetstream = connection.jetstream()
    if mode == "publish":
        headers = {
            "ce-specversion": "1.0",
            "ce-id": "py-event-1",
            # Written by hand, byte for byte, as the binding spells it: "/interop/nats-py ä".
            "ce-source": "/interop/nats-py%20%C3%A4",
            "ce-type": "com.example.order.created",
            "ce-subject": ce_encode('interop.from-python.zürich "old town" 100%'),
            "ce-time": "2026-11-23T10:15:30.123456789Z",
            # The binding maps datacontenttype to ce-datacontenttype, like every attribute.
            "ce-datacontenttype": "application/json",
            "ce-tenant": "acme",
            "ce-city": ce_encode('Zürich "Altstadt" 100% €/😀'),
            "ce-correlationid": "corr-py",
            "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "Nats-Msg-Id": "py-event-1",
        }
        ack = await jetstream.publish(subject, b'{"order":"py-1"}', headers=headers)
        print(json.dumps({"stream": ack.stream, "seq": ack.seq}))
    elif mode == "publish-structured":
        # Written as text, so that the receiver can check the data's JSON arrives exactly as written.
        unmarked = (
            '{"specversion": "1.0", "id": "py-structured-1", "source": "/interop/nats-py \u00e4",'
            ' "type": "com.example.order.created", "time": "2026-11-23T10:15:30.5Z",'
            ' "datacontenttype": "application/json", "tenant": "acme", "attempt": 2,'
            ' "data": {"order": "py-2",  "items": [1, 2]}}'
        )
        await jetstream.publish(subject, unmarked.encode())
        marked = json.dumps({
            "specversion": "1.0", "id": "py-structured-2", "source": "/interop/nats-py", "type": "com.example.blob",
            "datacontenttype": "application/octet-stream", "data_base64": "AAH/gA==",
        })
        await jetstream.publish(subject, marked.encode(), headers={"content-type": "application/cloudevents+json"})
        print(json.dumps({"published": 2}))
    elif mode == "read":
        subscription = await jetstream.subscribe(subject, ordered_consumer=True)
        message = await subscription.next_msg(timeout=10)
        print(json.dumps(describe(message)))
    elif mode == "respond":
        subscription = await connection.subscribe(subject)
        await connection.flush()
        message = await subscription.next_msg(timeout=30)
        request = describe(message)
        reply_headers = {
            "ce-specversion": "1.0",
            "ce-id": "py-reply-1",
            "ce-source": ce_encode("/interop/nats-py ä"),
            "ce-type": "com.example.quote.answered",
            "ce-subject": ce_encode(request["decoded"]["ce-subject"] + '.réponse "ok" 100%'),
            "ce-note": ce_encode('prix: 12 € "TTC" 100%'),
        }
        await connection.publish(message.reply, b"answer", headers=reply_headers)
        await connection.flush()
        print(json.dumps(request))
    elif mode == "request":
        headers = {
            "ce-specversion": "1.0",
            "ce-id": "py-request-1",
            "ce-source": ce_encode("/interop/nats-py ä"),
            "ce-type": "com.example.stock.requested",
            "ce-datacontenttype": "text/plain",
            "ce-sku": ce_encode('Käse "alt" 100%'),
        }
        for _ in range(300):
            try:
                reply = await connection.request(subject, b"sku-1", timeout=2, headers=headers)
                break
            except nats.errors.NoRespondersError:
                await asyncio.sleep(0.1)
        else:
            raise SystemExit("nobody answered")
        print(json.dumps(describe(reply)))
    else:
        raise SystemExit(f"unknown mode {mode}")
    await connection.close()


asyncio.run(main())
