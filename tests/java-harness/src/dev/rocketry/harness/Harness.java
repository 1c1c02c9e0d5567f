package dev.rocketry.harness;

import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.UUID;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.Semaphore;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReference;

import org.apache.rocketmq.acl.common.AclClientRPCHook;
import org.apache.rocketmq.acl.common.SessionCredentials;
import org.apache.rocketmq.client.consumer.DefaultLitePullConsumer;
import org.apache.rocketmq.client.consumer.DefaultMQPushConsumer;
import org.apache.rocketmq.client.consumer.listener.ConsumeConcurrentlyStatus;
import org.apache.rocketmq.client.consumer.listener.MessageListenerConcurrently;
import org.apache.rocketmq.client.consumer.rebalance.AllocateMessageQueueAveragely;
import org.apache.rocketmq.client.producer.DefaultMQProducer;
import org.apache.rocketmq.client.producer.SendCallback;
import org.apache.rocketmq.client.producer.SendResult;
import org.apache.rocketmq.client.producer.SendStatus;
import org.apache.rocketmq.common.consumer.ConsumeFromWhere;
import org.apache.rocketmq.common.message.Message;
import org.apache.rocketmq.common.message.MessageExt;
import org.apache.rocketmq.remoting.RPCHook;
import org.apache.rocketmq.remoting.protocol.RemotingCommand;

/**
 * A small driver of the real RocketMQ Java client for Rocketry's tests. It is compiled
 * against each client version the peers install (5.5.0 and 4.9.8) and uses only API that
 * both share.
 *
 * <pre>
 *   Harness produce namesrv=H:P topic=T count=N mode=sync|async|oneway|batch [first=0] [size=B] [batch=32] [run=ID]
 *   Harness consume namesrv=H:P topic=T group=G type=push|litePull expect=N [timeoutMs=60000] [run=ID] [holdMs=0] [max=0]
 * </pre>
 *
 * With {@code max}, a litePull consumer takes one message per poll and stops after
 * {@code max} of them, then commits: the group's committed offsets then add up to exactly
 * {@code max} (what a test of lag figures needs).
 *
 * With {@code holdMs}, a push consumer prints "HOLDING" on stdout once it has the expected
 * messages and stays online that long before it shuts down, so a test can inspect it live.
 *
 * Bodies are "RUN-INDEX-" padded to the size, so a consumer can tell each message apart;
 * indexes run from {@code first} to {@code first + count - 1}.
 * With {@code accessKey} and {@code secretKey}, the client signs its requests with the
 * client's own ACL hook ({@code AclClientRPCHook}).
 *
 * The last line on stdout is "RESULT {json}"; progress goes to stderr.
 */
public final class Harness {
    public static void main(String[] argv) throws Exception {
        if (argv.length < 1) {
            System.err.println("usage: Harness produce|consume key=value...");
            System.exit(2);
        }
        Map<String, String> args = new HashMap<>();
        for (int i = 1; i < argv.length; i++) {
            int eq = argv[i].indexOf('=');
            if (eq < 0) {
                System.err.println("argument without '=': " + argv[i]);
                System.exit(2);
            }
            args.put(argv[i].substring(0, eq), argv[i].substring(eq + 1));
        }
        String result;
        switch (argv[0]) {
            case "produce":
                result = produce(args);
                break;
            case "consume":
                result = consume(args);
                break;
            default:
                System.err.println("unknown command " + argv[0]);
                System.exit(2);
                return;
        }
        System.out.println("RESULT " + result);
        System.out.flush();
        // Client threads (timers, netty) are not all daemons in every version.
        System.exit(0);
    }

    private static String need(Map<String, String> args, String key) {
        String v = args.get(key);
        if (v == null) {
            throw new IllegalArgumentException("missing argument " + key + "=");
        }
        return v;
    }

    /**
     * The client's ACL hook when the arguments give credentials, else none. With
     * {@code replayFields=true}, each request first gets the {@code Timestamp} and
     * {@code Nonce} extFields that Rocketry's replay protection asks for, so the ACL hook
     * signs them with the rest.
     */
    static RPCHook aclHook(Map<String, String> args) {
        String accessKey = args.get("accessKey");
        if (accessKey == null) {
            return null;
        }
        RPCHook acl = new AclClientRPCHook(new SessionCredentials(accessKey, need(args, "secretKey")));
        if (!"true".equals(args.get("replayFields"))) {
            return acl;
        }
        return new RPCHook() {
            @Override
            public void doBeforeRequest(String remoteAddr, RemotingCommand request) {
                request.addExtField("Timestamp", Long.toString(System.currentTimeMillis()));
                request.addExtField("Nonce", UUID.randomUUID().toString());
                acl.doBeforeRequest(remoteAddr, request);
            }

            @Override
            public void doAfterResponse(String remoteAddr, RemotingCommand request, RemotingCommand response) {
                acl.doAfterResponse(remoteAddr, request, response);
            }
        };
    }

    private static byte[] body(String run, int index, int size) {
        StringBuilder sb = new StringBuilder(run).append('-').append(index).append('-');
        while (sb.length() < size) {
            sb.append('x');
        }
        return sb.toString().getBytes(StandardCharsets.UTF_8);
    }

    private static String produce(Map<String, String> args) throws Exception {
        String topic = need(args, "topic");
        int count = Integer.parseInt(need(args, "count"));
        String mode = args.getOrDefault("mode", "sync");
        int size = Integer.parseInt(args.getOrDefault("size", "64"));
        int batchSize = Integer.parseInt(args.getOrDefault("batch", "32"));
        String run = args.getOrDefault("run", "run");
        String tag = args.getOrDefault("tag", "TagA");
        int first = Integer.parseInt(args.getOrDefault("first", "0"));

        DefaultMQProducer producer = new DefaultMQProducer(args.getOrDefault("group", "harness_producer"), aclHook(args));
        producer.setNamesrvAddr(need(args, "namesrv"));
        producer.setSendMsgTimeout(Integer.parseInt(args.getOrDefault("sendTimeoutMs", "10000")));
        // The client's own requests (heartbeats, route lookups) get 10 s as well: when one
        // times out the client closes the connection, failing the sends written to it, and
        // the client sends those again. In a CI run on two loaded cores a heartbeat behind
        // 10,000 oneway sends took over 3 s, and the last send, retried, was stored twice.
        producer.setMqClientApiTimeout(Integer.parseInt(args.getOrDefault("apiTimeoutMs", "10000")));
        // How often routes are looked up again (the client's default is 30 s): a test that
        // fails a replicated group's leader over asks sooner.
        if (args.containsKey("pollNameServerMs")) {
            producer.setPollNameServerInterval(Integer.parseInt(args.get("pollNameServerMs")));
        }
        producer.start();

        AtomicLong ok = new AtomicLong();
        AtomicLong failed = new AtomicLong();
        AtomicReference<String> firstError = new AtomicReference<>();
        // The indexes the broker acknowledged (sync and batch modes), for a test that checks
        // each one, when each acknowledgement came (ms since the epoch) and from where (the
        // offset message id, which begins with the storing broker's address).
        List<Integer> acked = new ArrayList<>();
        List<String> ackedAt = new ArrayList<>();
        long pauseAfterFailureMs = Long.parseLong(args.getOrDefault("pauseAfterFailureMs", "0"));
        long started = System.nanoTime();
        switch (mode) {
            case "sync":
                for (int i = 0; i < count; i++) {
                    try {
                        SendResult r = producer.send(message(topic, tag, run, first + i, size));
                        if (r.getSendStatus() == SendStatus.SEND_OK) {
                            ok.incrementAndGet();
                            acked.add(first + i);
                            ackedAt.add(System.currentTimeMillis() + " " + r.getOffsetMsgId());
                        } else {
                            failed.incrementAndGet();
                            firstError.compareAndSet(null, "status " + r.getSendStatus());
                        }
                    } catch (Exception e) {
                        failed.incrementAndGet();
                        firstError.compareAndSet(null, describe(e));
                        // As an application would before its next message, while a failed
                        // over broker group finds its new leader.
                        Thread.sleep(pauseAfterFailureMs);
                    }
                }
                break;
            case "async": {
                Semaphore inFlight = new Semaphore(256);
                CountDownLatch done = new CountDownLatch(count);
                for (int i = 0; i < count; i++) {
                    inFlight.acquire();
                    producer.send(message(topic, tag, run, first + i, size), new SendCallback() {
                        @Override
                        public void onSuccess(SendResult r) {
                            if (r.getSendStatus() == SendStatus.SEND_OK) {
                                ok.incrementAndGet();
                            } else {
                                failed.incrementAndGet();
                                firstError.compareAndSet(null, "status " + r.getSendStatus());
                            }
                            inFlight.release();
                            done.countDown();
                        }

                        @Override
                        public void onException(Throwable e) {
                            failed.incrementAndGet();
                            firstError.compareAndSet(null, describe(e));
                            inFlight.release();
                            done.countDown();
                        }
                    });
                }
                done.await(120, TimeUnit.SECONDS);
                break;
            }
            case "oneway":
                for (int i = 0; i < count; i++) {
                    try {
                        Message m = message(topic, tag, run, first + i, size);
                        // The last one is sent sync: a oneway frame may still sit in the
                        // client's buffers when send returns, and shutdown closes the channel
                        // once its unregister has waited 3 s, discarding them. A reply means
                        // the broker has read every frame sent before it on its channel (these
                        // runs have one broker). Rocketry reads a connection only as fast as it
                        // serves it (docs/compatibility.md, "Oneway sends and a busy broker"),
                        // so this reply waits for every send before it to be stored: it gets a
                        // minute, not the send timeout (10,000 oneway sends once took over 10 s
                        // to store on two loaded cores, and the reply came too late).
                        if (i == count - 1) {
                            producer.send(m, Math.max(60_000L, producer.getSendMsgTimeout()));
                        } else {
                            producer.sendOneway(m);
                        }
                        ok.incrementAndGet();
                    } catch (Exception e) {
                        failed.incrementAndGet();
                        firstError.compareAndSet(null, describe(e));
                    }
                }
                break;
            case "batch":
                for (int i = 0; i < count; i += batchSize) {
                    List<Message> batch = new ArrayList<>();
                    for (int j = i; j < Math.min(count, i + batchSize); j++) {
                        batch.add(message(topic, tag, run, first + j, size));
                    }
                    try {
                        SendResult r = producer.send(batch);
                        if (r.getSendStatus() == SendStatus.SEND_OK) {
                            ok.addAndGet(batch.size());
                            String at = System.currentTimeMillis() + " " + r.getOffsetMsgId().split(",")[0];
                            for (int j = i; j < Math.min(count, i + batchSize); j++) {
                                acked.add(first + j);
                                ackedAt.add(at);
                            }
                        } else {
                            failed.addAndGet(batch.size());
                            firstError.compareAndSet(null, "status " + r.getSendStatus());
                        }
                    } catch (Exception e) {
                        failed.addAndGet(batch.size());
                        firstError.compareAndSet(null, describe(e));
                        Thread.sleep(pauseAfterFailureMs);
                    }
                }
                break;
            default:
                throw new IllegalArgumentException("unknown mode " + mode);
        }
        long elapsedMs = (System.nanoTime() - started) / 1_000_000;
        producer.shutdown();
        writeIndexes(args.get("acked"), acked);
        writeAckTimes(args.get("ackedAt"), acked, ackedAt);
        return "{\"command\":\"produce\",\"mode\":\"" + mode + "\",\"sent\":" + ok.get() + ",\"failed\":" + failed.get()
            + ",\"elapsedMs\":" + elapsedMs + ",\"firstError\":" + quote(firstError.get()) + "}";
    }

    private static Message message(String topic, String tag, String run, int index, int size) {
        Message m = new Message(topic, tag, body(run, index, size));
        m.setKeys(run + "-key-" + index);
        return m;
    }

    /** What a consumer saw, checked for exactly-once and per-queue order. */
    private static final class Tally {
        final String run;
        final Map<Integer, Integer> seen = new ConcurrentHashMap<>();
        final Map<String, Long> lastOffset = new HashMap<>();
        final java.util.Set<String> hosts = new java.util.HashSet<>();
        int minIndex = Integer.MAX_VALUE;
        int maxIndex = -1;
        long foreign;
        long outOfOrder;
        long gaps;

        Tally(String run) {
            this.run = run;
        }

        synchronized void add(MessageExt m) {
            String b = new String(m.getBody(), StandardCharsets.UTF_8);
            String[] parts = b.split("-", 3);
            if (parts.length < 3 || !parts[0].equals(run)) {
                foreign++;
                return;
            }
            int index = Integer.parseInt(parts[1]);
            seen.merge(index, 1, Integer::sum);
            minIndex = Math.min(minIndex, index);
            maxIndex = Math.max(maxIndex, index);
            hosts.add(String.valueOf(m.getStoreHost()));
            String queue = m.getStoreHost() + "/" + m.getQueueId();
            Long last = lastOffset.put(queue, m.getQueueOffset());
            if (last != null) {
                if (m.getQueueOffset() <= last) {
                    outOfOrder++;
                } else if (m.getQueueOffset() != last + 1) {
                    gaps++;
                }
            }
        }

        synchronized int unique() {
            return seen.size();
        }

        synchronized String json(String type, long elapsedMs) {
            long received = 0;
            for (int n : seen.values()) {
                received += n;
            }
            return "{\"command\":\"consume\",\"type\":\"" + type + "\",\"received\":" + received + ",\"unique\":" + seen.size()
                + ",\"duplicates\":" + (received - seen.size()) + ",\"foreign\":" + foreign + ",\"outOfOrder\":" + outOfOrder
                + ",\"gaps\":" + gaps + ",\"queues\":" + lastOffset.size() + ",\"brokers\":" + hosts.size()
                + ",\"minIndex\":" + (maxIndex < 0 ? -1 : minIndex) + ",\"maxIndex\":" + maxIndex
                + ",\"elapsedMs\":" + elapsedMs + "}";
        }
    }

    private static String consume(Map<String, String> args) throws Exception {
        String topic = need(args, "topic");
        String group = need(args, "group");
        String type = args.getOrDefault("type", "push");
        int expect = Integer.parseInt(need(args, "expect"));
        long timeoutMs = Long.parseLong(args.getOrDefault("timeoutMs", "60000"));
        // After the expected count arrives, keep listening a little to catch duplicates.
        long settleMs = Long.parseLong(args.getOrDefault("settleMs", "1000"));
        Tally tally = new Tally(args.getOrDefault("run", "run"));
        long started = System.nanoTime();
        long deadline = System.currentTimeMillis() + timeoutMs;

        if (type.equals("push")) {
            DefaultMQPushConsumer consumer =
                new DefaultMQPushConsumer(group, aclHook(args), new AllocateMessageQueueAveragely());
            consumer.setNamesrvAddr(need(args, "namesrv"));
            consumer.setConsumeFromWhere(ConsumeFromWhere.CONSUME_FROM_FIRST_OFFSET);
            // One consuming thread keeps each queue's messages in their queue order, which
            // the tally checks.
            consumer.setConsumeThreadMin(1);
            consumer.setConsumeThreadMax(1);
            consumer.subscribe(topic, args.getOrDefault("filter", "*"));
            consumer.registerMessageListener((MessageListenerConcurrently) (msgs, context) -> {
                for (MessageExt m : msgs) {
                    tally.add(m);
                }
                return ConsumeConcurrentlyStatus.CONSUME_SUCCESS;
            });
            consumer.start();
            waitFor(tally, expect, deadline, settleMs);
            long holdMs = Long.parseLong(args.getOrDefault("holdMs", "0"));
            if (holdMs > 0) {
                System.out.println("HOLDING");
                System.out.flush();
                Thread.sleep(holdMs);
            }
            consumer.shutdown();
        } else if (type.equals("litePull")) {
            DefaultLitePullConsumer consumer = new DefaultLitePullConsumer(group, aclHook(args));
            consumer.setNamesrvAddr(need(args, "namesrv"));
            consumer.setConsumeFromWhere(ConsumeFromWhere.CONSUME_FROM_FIRST_OFFSET);
            int max = Integer.parseInt(args.getOrDefault("max", "0"));
            if (max > 0) {
                // A poll returns what one pull fetched: one message each, so none past max.
                consumer.setPullBatchSize(1);
            }
            consumer.subscribe(topic, args.getOrDefault("filter", "*"));
            consumer.start();
            long settleUntil = Long.MAX_VALUE;
            int polled = 0;
            while (System.currentTimeMillis() < Math.min(deadline, settleUntil) && (max == 0 || polled < max)) {
                for (MessageExt m : consumer.poll(200)) {
                    tally.add(m);
                    polled++;
                }
                if (settleUntil == Long.MAX_VALUE && tally.unique() >= expect) {
                    settleUntil = System.currentTimeMillis() + settleMs;
                }
            }
            consumer.commitSync();
            consumer.shutdown();
        } else {
            throw new IllegalArgumentException("unknown consumer type " + type);
        }
        writeIndexes(args.get("seen"), tally.seen.keySet());
        return tally.json(type, (System.nanoTime() - started) / 1_000_000);
    }

    /** Writes message indexes, one per line, to {@code path} when it is given. */
    private static void writeIndexes(String path, java.util.Collection<Integer> indexes) throws java.io.IOException {
        if (path == null) {
            return;
        }
        StringBuilder text = new StringBuilder();
        for (int index : indexes) {
            text.append(index).append('\n');
        }
        java.nio.file.Files.write(java.nio.file.Paths.get(path), text.toString().getBytes(StandardCharsets.UTF_8));
    }

    /** Each acknowledged index, when and from where: `index millis offsetMsgId` per line. */
    private static void writeAckTimes(String path, List<Integer> indexes, List<String> at) throws java.io.IOException {
        if (path == null) {
            return;
        }
        StringBuilder text = new StringBuilder();
        for (int i = 0; i < indexes.size(); i++) {
            text.append(indexes.get(i)).append(' ').append(at.get(i)).append('\n');
        }
        java.nio.file.Files.write(java.nio.file.Paths.get(path), text.toString().getBytes(StandardCharsets.UTF_8));
    }

    private static void waitFor(Tally tally, int expect, long deadline, long settleMs) throws InterruptedException {
        while (System.currentTimeMillis() < deadline && tally.unique() < expect) {
            Thread.sleep(50);
        }
        if (tally.unique() >= expect) {
            Thread.sleep(settleMs);
        }
    }

    /**
     * An exception and its causes: a send the client retried fails with "Send [3] times"
     * and the broker's code and remark only in the cause.
     */
    static String describe(Throwable e) {
        StringBuilder text = new StringBuilder(e.toString());
        for (Throwable cause = e.getCause(); cause != null && cause != cause.getCause(); cause = cause.getCause()) {
            text.append(" caused by ").append(cause);
        }
        return text.toString();
    }

    /** A JSON string of {@code s}, or {@code null}. */
    static String quote(String s) {
        if (s == null) {
            return "null";
        }
        return "\"" + s.replace("\\", "\\\\").replace("\"", "\\\"").replace("\n", " ") + "\"";
    }
}
