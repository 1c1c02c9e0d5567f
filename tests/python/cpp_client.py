"""Drive the official RocketMQ C++ client through the `rocketmq` 0.4.4 Python wheel.

    python cpp_client.py NAMESRV TOPIC COUNT

Sends COUNT messages with send_sync, then push-consumes them with a fresh group and
prints one line "RESULT {json}" saying what was sent and what came back.
"""

import glob
import json
import os
import sys
import threading
import time
import uuid

from rocketmq.client import Message, Producer, PushConsumer


def main() -> int:
    namesrv, topic, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    timeout_s = float(sys.argv[4]) if len(sys.argv) > 4 else 60.0
    run = uuid.uuid4().hex[:8]

    producer = Producer("py_cpp_producer_" + run)
    producer.set_namesrv_addr(namesrv)
    producer.start()
    sent, failed, first_error = 0, 0, None
    for i in range(count):
        msg = Message(topic)
        msg.set_keys(f"{run}-key-{i}")
        msg.set_tags("py")
        msg.set_body(f"{run}-{i}")
        try:
            result = producer.send_sync(msg)
            if int(result.status) == 0:
                sent += 1
            else:
                failed += 1
                first_error = first_error or f"status {result.status}"
        except Exception as exc:  # the client raises its own exception types
            failed += 1
            first_error = first_error or repr(exc)
    producer.shutdown()

    seen: dict[int, int] = {}
    foreign = 0
    lock = threading.Lock()

    def on_message(msg):
        nonlocal foreign
        body = msg.body.decode() if isinstance(msg.body, bytes) else msg.body
        prefix, _, index = body.partition("-")
        with lock:
            if prefix != run or not index.isdigit():
                foreign += 1
            else:
                seen[int(index)] = seen.get(int(index), 0) + 1

    consumer = PushConsumer("py_cpp_consumer_" + run)
    consumer.set_namesrv_addr(namesrv)
    consumer.subscribe(topic, on_message)
    consumer.start()
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with lock:
            if len(seen) >= sent:
                break
        time.sleep(0.05)
    time.sleep(0.5)  # catch duplicates that arrive late
    consumer.shutdown()

    with lock:
        received = sum(seen.values())
        result = {
            "sent": sent, "failed": failed, "firstError": first_error,
            "received": received, "unique": len(seen), "duplicates": received - len(seen),
            "foreign": foreign,
        }
    if failed or len(seen) < sent:
        result["clientErrors"] = client_errors()
    print("RESULT " + json.dumps(result), flush=True)
    return 0


def client_errors(limit: int = 40) -> list[str]:
    """The C++ client's own error and warning lines: it logs under $HOME, which the runner
    deletes, and its exceptions alone do not say why a send failed."""
    lines = []
    for path in sorted(glob.glob(os.path.expanduser("~/logs/rocketmq-cpp/*"))):
        with open(path, errors="replace") as log:
            lines += [line.rstrip() for line in log if "(error)" in line or "(warning)" in line]
    return lines[-limit:]


if __name__ == "__main__":
    sys.exit(main())
