"""Load from the official RocketMQ C++ client (remoting), through the `rocketmq` 0.4.4 wheel.

    python cpp_producer.py NAMESRV TOPIC [--threads 16] [--size 1024] [--warmup 2] [--duration 8]

One producer shared by THREADS threads, each sending SIZE-byte messages with send_sync in a
loop, as the C++ client's own SyncProducer example does. ctypes releases the GIL for the
length of each call into the client, so the sends overlap; the Python around each call is
the same for every broker. Prints one line "RESULT {json}" with what was acknowledged in the
measured window (after the warm-up) and the latency of each send in it, as `bench
import-client` reads it.
"""

import argparse
import json
import threading
import time
import uuid

from rocketmq.client import Message, Producer


def percentile(ordered, q):
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("namesrv")
    parser.add_argument("topic")
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--duration", type=float, default=8.0)
    args = parser.parse_args()

    producer = Producer("bench_cpp_" + uuid.uuid4().hex[:8], timeout=10000)
    producer.set_namesrv_addr(args.namesrv)
    producer.start()

    start = time.monotonic() + args.warmup
    end = start + args.duration
    body = b"x" * args.size
    lock = threading.Lock()
    latencies_us, errors, first_error = [], {}, []

    def send_loop():
        mine, failed = [], {}
        msg = Message(args.topic)
        msg.set_body(body)
        while True:
            before = time.monotonic()
            if before >= end:
                break
            try:
                status = int(producer.send_sync(msg).status)
                error = None if status == 0 else f"status {status}"
            except Exception as exc:  # the client raises its own exception types
                error = type(exc).__name__
                with lock:
                    first_error[:] = first_error or [str(exc)[:300]]
            after = time.monotonic()
            if before < start:
                continue
            if error is None:
                mine.append(int((after - before) * 1e6))
            else:
                failed[error] = failed.get(error, 0) + 1
        with lock:
            latencies_us.extend(mine)
            for kind, n in failed.items():
                errors[kind] = errors.get(kind, 0) + n

    threads = [threading.Thread(target=send_loop) for _ in range(args.threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    producer.shutdown()

    latencies_us.sort()
    result = {
        "sent": len(latencies_us),
        "errors": errors,
        "first_error": first_error[0] if first_error else None,
        "elapsed_s": args.duration,
        "size": args.size,
        "threads": args.threads,
    }
    if latencies_us:
        result["latency_us"] = {
            "count": len(latencies_us),
            "mean_us": sum(latencies_us) / len(latencies_us),
            "p50_us": percentile(latencies_us, 0.50),
            "p99_us": percentile(latencies_us, 0.99),
            "p999_us": percentile(latencies_us, 0.999),
            "max_us": latencies_us[-1],
        }
    print("RESULT " + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
