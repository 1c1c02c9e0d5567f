package dev.rocketry.harness;

import java.io.FileWriter;
import java.io.PrintWriter;
import java.nio.charset.StandardCharsets;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.atomic.AtomicLong;

import org.apache.rocketmq.client.consumer.DefaultMQPushConsumer;
import org.apache.rocketmq.client.consumer.MessageSelector;
import org.apache.rocketmq.client.consumer.listener.ConsumeConcurrentlyStatus;
import org.apache.rocketmq.client.consumer.listener.ConsumeOrderlyStatus;
import org.apache.rocketmq.client.consumer.listener.MessageListenerConcurrently;
import org.apache.rocketmq.client.consumer.listener.MessageListenerOrderly;
import org.apache.rocketmq.client.producer.DefaultMQProducer;
import org.apache.rocketmq.client.producer.SendResult;
import org.apache.rocketmq.client.producer.SendStatus;
import org.apache.rocketmq.common.consumer.ConsumeFromWhere;
import org.apache.rocketmq.common.message.Message;
import org.apache.rocketmq.common.message.MessageExt;
import org.apache.rocketmq.common.message.MessageQueue;

/**
 * The feature scenarios of Rocketry's tests: tags, SQL92 properties, delay levels, order
 * keys, retries, broadcasting and consumers that stop or crash part-way. Every delivery is
 * written to an output file, one line each, for the test to check:
 *
 * <pre>
 *   index,queueId,queueOffset,reconsumeTimes,receiveMs,bornMs,tags,topic,storeMs
 *
 *   Features produce namesrv=H:P topic=T count=N [first=0] [run=ID] [tags=A,B,C] [prop=NAME]
 *                    [delayLevel=L] [orderKeys=K] [intervalMs=0] [untilFile=PATH]
 *                    [producerGroup=features_producer]
 *                    [pollNameServerInterval=30000] [trace=false]
 *                    [sendTimeoutMs=3000] [apiTimeoutMs=3000]
 *                    [deliverAt=EPOCH_MS [deliverSpreadMs=0]] [threads=1]
 *   Features consume namesrv=H:P topic=T group=G out=FILE [expect=N] [type=push|orderly]
 *                    [model=clustering|broadcasting] [filter=TAGEXPR] [sql=EXPR] [run=ID]
 *                    [idleMs=0] [timeoutMs=60000] [stopAfter=N] [haltAfter=N] [sleepMs=0]
 *                    [fail=false] [maxReconsume=-1] [verify=N] [skip=I,J,...] [trace=false]
 *                    [apiTimeoutMs=3000]
 *   Features check dir=DIR verify=N
 * </pre>
 *
 * {@code check} reads every consumer output file in {@code dir} (consumers of one group that
 * came and went, each writing its own file) and reports which of indexes 0..N-1 none of them
 * received, and from which queues they took messages.
 *
 * A producer with {@code untilFile} sends until that file exists (or {@code count} is
 * reached), pausing {@code intervalMs} between sends, and reports which indexes failed after
 * the client's own retries; {@code pollNameServerInterval} is how often, in ms, the client
 * refreshes its routes (what a drained broker's producers wait for). With {@code trace=true}
 * the client's message trace is on (records go to {@code RMQ_SYS_TRACE_TOPIC}) and the
 * producer reports the ids of the first messages it sent. With {@code deliverAt} message i
 * asks (5.x {@code setDeliverTimeMs}) to be delivered at deliverAt + (i * 7919) mod
 * deliverSpreadMs. With {@code threads} above 1 the sends run on that many threads, in no
 * particular order. With {@code accessKey} and {@code secretKey} producers and consumers
 * sign their requests (see {@link Harness}). A consumer with {@code verify=N} reports which of indexes
 * 0..N-1 it never received, leaving out those in {@code skip} (the failed sends).
 *
 * With {@code tags}, message i carries tag number i mod the list's length; with {@code prop},
 * property NAME = i mod 10; with {@code orderKeys}, key i mod K picks the queue (key mod the
 * queue count) and is property {@code orderKey}. A consumer ends when it has {@code expect}
 * distinct messages, after {@code idleMs} without one (20 s more before the first), at the
 * timeout, or after {@code stopAfter} (clean shutdown) or {@code haltAfter} (abrupt exit, as a
 * crash) deliveries.
 * Its model class is looked up by name so the same source builds against 4.9.8 and 5.5.0.
 */
public final class Features {
    public static void main(String[] argv) throws Exception {
        Map<String, String> args = new HashMap<>();
        for (int i = 1; i < argv.length; i++) {
            int eq = argv[i].indexOf('=');
            args.put(argv[i].substring(0, eq), argv[i].substring(eq + 1));
        }
        String result;
        switch (argv[0]) {
            case "produce":
                result = produce(args);
                break;
            case "check":
                result = check(args);
                break;
            default:
                result = consume(args);
        }
        System.out.println("RESULT " + result);
        System.out.flush();
        System.exit(0);
    }

    private static String produce(Map<String, String> args) throws Exception {
        String topic = args.get("topic");
        int count = Integer.parseInt(args.get("count"));
        int first = Integer.parseInt(args.getOrDefault("first", "0"));
        String run = args.getOrDefault("run", "run");
        String[] tags = args.getOrDefault("tags", "TagA").split(",");
        String prop = args.get("prop");
        int delayLevel = Integer.parseInt(args.getOrDefault("delayLevel", "0"));
        int orderKeys = Integer.parseInt(args.getOrDefault("orderKeys", "0"));
        long intervalMs = Long.parseLong(args.getOrDefault("intervalMs", "0"));
        java.io.File untilFile = args.containsKey("untilFile") ? new java.io.File(args.get("untilFile")) : null;

        boolean trace = Boolean.parseBoolean(args.getOrDefault("trace", "false"));
        long deliverAt = Long.parseLong(args.getOrDefault("deliverAt", "0"));
        long deliverSpreadMs = Long.parseLong(args.getOrDefault("deliverSpreadMs", "0"));
        int threads = Integer.parseInt(args.getOrDefault("threads", "1"));
        List<String> msgIds = new java.util.ArrayList<>();
        DefaultMQProducer producer = new DefaultMQProducer(args.getOrDefault("producerGroup", "features_producer"),
            Harness.aclHook(args), trace, null);
        producer.setNamesrvAddr(args.get("namesrv"));
        if (args.containsKey("pollNameServerInterval")) {
            producer.setPollNameServerInterval(Integer.parseInt(args.get("pollNameServerInterval")));
        }
        if (args.containsKey("sendTimeoutMs")) {
            producer.setSendMsgTimeout(Integer.parseInt(args.get("sendTimeoutMs")));
        }
        setApiTimeout(producer, args);
        producer.start();
        AtomicLong sent = new AtomicLong();
        List<Integer> failed = java.util.Collections.synchronizedList(new java.util.ArrayList<>());
        java.util.concurrent.atomic.AtomicReference<String> firstError = new java.util.concurrent.atomic.AtomicReference<>();
        List<String> ids = java.util.Collections.synchronizedList(msgIds);
        java.util.concurrent.ExecutorService pool = threads > 1 ? java.util.concurrent.Executors.newFixedThreadPool(threads) : null;
        int attempted = 0;
        for (int n = 0; n < count && (untilFile == null || !untilFile.exists()); n++) {
            int index = first + n;
            attempted++;
            if (intervalMs > 0) {
                Thread.sleep(intervalMs);
            }
            Message m = new Message(topic, tags[index % tags.length],
                (run + "-" + index + "-").getBytes(StandardCharsets.UTF_8));
            m.setKeys(run + "-key-" + index);
            if (prop != null) {
                m.putUserProperty(prop, String.valueOf(index % 10));
            }
            if (delayLevel > 0) {
                m.setDelayTimeLevel(delayLevel);
            }
            if (deliverAt > 0) {
                long spread = deliverSpreadMs > 0 ? (index * 7919L) % deliverSpreadMs : 0;
                setDeliverTimeMs(m, deliverAt + spread);
            }
            Runnable send = () -> {
                try {
                    SendResult r;
                    if (orderKeys > 0) {
                        int key = index % orderKeys;
                        m.putUserProperty("orderKey", String.valueOf(key));
                        r = producer.send(m, (List<MessageQueue> mqs, Message msg, Object arg) ->
                            mqs.get((Integer) arg % mqs.size()), key);
                    } else {
                        r = producer.send(m);
                    }
                    if (r.getSendStatus() == SendStatus.SEND_OK) {
                        sent.incrementAndGet();
                        synchronized (ids) {
                            if (ids.size() < 5) {
                                ids.add("\"" + r.getMsgId() + "\"");
                            }
                        }
                    } else {
                        failed.add(index);
                    }
                } catch (Exception e) {
                    failed.add(index);
                    firstError.compareAndSet(null, Harness.describe(e));
                }
            };
            if (pool != null) {
                pool.submit(send);
            } else {
                send.run();
            }
        }
        if (pool != null) {
            pool.shutdown();
            pool.awaitTermination(10, java.util.concurrent.TimeUnit.MINUTES);
        }
        List<Integer> failedIndexes = new java.util.ArrayList<>(failed);
        java.util.Collections.sort(failedIndexes);
        if (trace) {
            // The trace dispatcher sends its batches asynchronously, and shutting the client
            // down closes the channels under a send still in flight: give it time first.
            Thread.sleep(5000);
        }
        producer.shutdown();
        String error = firstError.get();
        return "{\"sent\":" + sent.get() + ",\"failed\":" + failedIndexes.size() + ",\"attempted\":" + attempted
            + ",\"msgIds\":" + msgIds
            + ",\"failedIndexes\":" + failedIndexes + ",\"firstError\":"
            + Harness.quote(error) + "}";
    }

    /** 5.x only (4.9 has no timer messages), so it is reached by reflection. */
    private static void setDeliverTimeMs(Message m, long ms) throws Exception {
        m.getClass().getMethod("setDeliverTimeMs", long.class).invoke(m, ms);
    }

    /** MessageModel moved packages between 4.9 and 5.x, so it is reached by reflection. */
    @SuppressWarnings({"unchecked", "rawtypes"})
    /**
     * The client's own requests (route lookups, heartbeats) have a timeout of their own, not
     * the send's: a send's first route lookup is bounded by this, and so is a consumer's start.
     * When one of them times out the client closes the channel, failing whatever else was
     * written to it (the start's lookup runs beside the client's scheduled one).
     */
    private static void setApiTimeout(org.apache.rocketmq.client.ClientConfig client, Map<String, String> args) {
        if (args.containsKey("apiTimeoutMs")) {
            client.setMqClientApiTimeout(Integer.parseInt(args.get("apiTimeoutMs")));
        }
    }

    private static void setBroadcasting(DefaultMQPushConsumer consumer) throws Exception {
        for (java.lang.reflect.Method method : consumer.getClass().getMethods()) {
            if (method.getName().equals("setMessageModel")) {
                Class model = method.getParameterTypes()[0];
                method.invoke(consumer, Enum.valueOf(model, "BROADCASTING"));
                return;
            }
        }
        throw new IllegalStateException("no setMessageModel");
    }

    private static String consume(Map<String, String> args) throws Exception {
        String run = args.getOrDefault("run", "run");
        int expect = Integer.parseInt(args.getOrDefault("expect", String.valueOf(Integer.MAX_VALUE)));
        long idleMs = Long.parseLong(args.getOrDefault("idleMs", "0"));
        long timeoutMs = Long.parseLong(args.getOrDefault("timeoutMs", "60000"));
        long stopAfter = Long.parseLong(args.getOrDefault("stopAfter", "0"));
        long haltAfter = Long.parseLong(args.getOrDefault("haltAfter", "0"));
        long sleepMs = Long.parseLong(args.getOrDefault("sleepMs", "0"));
        boolean fail = Boolean.parseBoolean(args.getOrDefault("fail", "false"));
        boolean orderly = args.getOrDefault("type", "push").equals("orderly");
        PrintWriter out = new PrintWriter(new FileWriter(args.get("out"), true), true);
        Set<Integer> seen = new HashSet<>();
        AtomicLong deliveries = new AtomicLong();
        AtomicLong last = new AtomicLong(System.currentTimeMillis());

        DefaultMQPushConsumer consumer = new DefaultMQPushConsumer(args.get("group"), Harness.aclHook(args),
            new org.apache.rocketmq.client.consumer.rebalance.AllocateMessageQueueAveragely(),
            Boolean.parseBoolean(args.getOrDefault("trace", "false")), null);
        consumer.setNamesrvAddr(args.get("namesrv"));
        setApiTimeout(consumer, args);
        consumer.setConsumeFromWhere(ConsumeFromWhere.CONSUME_FROM_FIRST_OFFSET);
        consumer.setMaxReconsumeTimes(Integer.parseInt(args.getOrDefault("maxReconsume", "-1")));
        if (args.getOrDefault("model", "clustering").equals("broadcasting")) {
            setBroadcasting(consumer);
        }
        if (args.containsKey("sql")) {
            consumer.subscribe(args.get("topic"), MessageSelector.bySql(args.get("sql")));
        } else {
            consumer.subscribe(args.get("topic"), args.getOrDefault("filter", "*"));
        }
        java.util.function.Consumer<MessageExt> record = m -> {
            String body = new String(m.getBody(), StandardCharsets.UTF_8);
            String[] parts = body.split("-", 3);
            if (parts.length < 3 || !parts[0].equals(run)) {
                return;
            }
            int index = Integer.parseInt(parts[1]);
            synchronized (out) {
                out.println(index + "," + m.getQueueId() + "," + m.getQueueOffset() + "," + m.getReconsumeTimes()
                    + "," + System.currentTimeMillis() + "," + m.getBornTimestamp() + "," + m.getTags() + "," + m.getTopic()
                    + "," + m.getStoreTimestamp());
                seen.add(index);
            }
            last.set(System.currentTimeMillis());
            long n = deliveries.incrementAndGet();
            if (haltAfter > 0 && n >= haltAfter) {
                out.flush();
                Runtime.getRuntime().halt(3);
            }
            if (sleepMs > 0) {
                try {
                    Thread.sleep(sleepMs);
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                }
            }
        };
        if (orderly) {
            consumer.registerMessageListener((MessageListenerOrderly) (msgs, context) -> {
                msgs.forEach(record);
                return ConsumeOrderlyStatus.SUCCESS;
            });
        } else {
            consumer.setConsumeThreadMin(1);
            consumer.setConsumeThreadMax(1);
            consumer.registerMessageListener((MessageListenerConcurrently) (msgs, context) -> {
                msgs.forEach(record);
                return fail ? ConsumeConcurrentlyStatus.RECONSUME_LATER : ConsumeConcurrentlyStatus.CONSUME_SUCCESS;
            });
        }
        boolean trace = Boolean.parseBoolean(args.getOrDefault("trace", "false"));
        consumer.start();
        long deadline = System.currentTimeMillis() + timeoutMs;
        while (System.currentTimeMillis() < deadline) {
            int unique;
            synchronized (out) {
                unique = seen.size();
            }
            if (unique >= expect) {
                Thread.sleep(1000);
                break;
            }
            if (stopAfter > 0 && deliveries.get() >= stopAfter) {
                break;
            }
            // Before the first delivery the client is still starting and rebalancing, which
            // takes seconds on a loaded machine: give that time before calling it idle.
            long idleLimit = deliveries.get() > 0 ? idleMs : idleMs + 20_000;
            if (idleMs > 0 && System.currentTimeMillis() - last.get() > idleLimit) {
                break;
            }
            Thread.sleep(20);
        }
        if (trace) {
            Thread.sleep(5000); // the trace dispatcher's last batch, as for the producer
        }
        consumer.shutdown();
        synchronized (out) {
            out.close();
            String missing = "";
            if (args.containsKey("verify")) {
                Set<Integer> skip = new HashSet<>();
                for (String index : args.getOrDefault("skip", "").split(",")) {
                    if (!index.isEmpty()) {
                        skip.add(Integer.parseInt(index));
                    }
                }
                List<Integer> absent = new java.util.ArrayList<>();
                for (int index = 0; index < Integer.parseInt(args.get("verify")); index++) {
                    if (!skip.contains(index) && !seen.contains(index)) {
                        absent.add(index);
                    }
                }
                missing = ",\"missing\":" + absent.size() + ",\"firstMissing\":"
                    + absent.subList(0, Math.min(20, absent.size()));
            }
            return "{\"deliveries\":" + deliveries.get() + ",\"unique\":" + seen.size() + missing + "}";
        }
    }

    private static String check(Map<String, String> args) throws Exception {
        int verify = Integer.parseInt(args.get("verify"));
        Set<Integer> seen = new HashSet<>();
        java.util.TreeSet<Integer> queues = new java.util.TreeSet<>();
        long deliveries = 0;
        java.io.File[] files = new java.io.File(args.get("dir")).listFiles();
        for (java.io.File file : files == null ? new java.io.File[0] : files) {
            for (String line : java.nio.file.Files.readAllLines(file.toPath(), StandardCharsets.UTF_8)) {
                String[] fields = line.split(",");
                if (fields.length < 2) {
                    continue; // a line cut short by a consumer killed mid-write
                }
                seen.add(Integer.parseInt(fields[0]));
                queues.add(Integer.parseInt(fields[1]));
                deliveries++;
            }
        }
        List<Integer> absent = new java.util.ArrayList<>();
        for (int index = 0; index < verify; index++) {
            if (!seen.contains(index)) {
                absent.add(index);
            }
        }
        return "{\"files\":" + (files == null ? 0 : files.length) + ",\"deliveries\":" + deliveries
            + ",\"unique\":" + seen.size() + ",\"missing\":" + absent.size()
            + ",\"firstMissing\":" + absent.subList(0, Math.min(20, absent.size()))
            + ",\"queues\":" + queues + "}";
    }
}
