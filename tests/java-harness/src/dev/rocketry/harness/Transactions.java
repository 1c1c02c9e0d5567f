package dev.rocketry.harness;

import java.io.FileWriter;
import java.io.PrintWriter;
import java.nio.charset.StandardCharsets;
import java.util.HashMap;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicLong;

import org.apache.rocketmq.client.producer.LocalTransactionState;
import org.apache.rocketmq.client.producer.SendStatus;
import org.apache.rocketmq.client.producer.TransactionListener;
import org.apache.rocketmq.client.producer.TransactionMQProducer;
import org.apache.rocketmq.client.producer.TransactionSendResult;
import org.apache.rocketmq.common.message.Message;
import org.apache.rocketmq.common.message.MessageExt;

/**
 * A transactional producer for Rocketry's transaction tests. Message i's body is
 * {@code run-i-}, as in Features, so Features' consumer reads them.
 *
 * <pre>
 *   Transactions namesrv=H:P topic=T group=G count=N [first=0] [run=ID]
 *                [local=mixed|unknown] [check=resolve|unknown] [expectChecks=0]
 *                [holdMs=0] [haltAfterSend=false] [decisions=FILE]
 * </pre>
 *
 * With {@code local=mixed} the local transaction of message i commits when i mod 3 is 0,
 * rolls back when it is 1 and answers UNKNOW when it is 2; with {@code local=unknown} every
 * one is UNKNOW. Asked by the broker ({@code check=resolve}), the checker commits message i
 * when i mod 3 is 0 or i mod 6 is 2 and rolls it back otherwise (what the local transactions
 * decided, the unknown ones settled half and half); {@code check=unknown} keeps answering
 * UNKNOW. After sending, the producer stays up until it has answered checks for
 * {@code expectChecks} distinct messages whose local transaction was UNKNOW, or
 * {@code holdMs} passed, so the broker can reach
 * it; {@code haltAfterSend} exits at once instead, as a crash, before answering any check.
 * A client heartbeats only the brokers of topics it has sent to, so a producer meant to
 * answer checks for another (a second producer of the group) must send at least once.
 * With {@code decisions}, each commit the producer decides (locally or when asked) appends
 * {@code index,commitMs} to FILE, the wall-clock time it returned COMMIT_MESSAGE: no
 * consumer on the same host may receive message i before that.
 */
public final class Transactions {
    public static void main(String[] argv) throws Exception {
        Map<String, String> args = new HashMap<>();
        for (int i = 0; i < argv.length; i++) {
            int eq = argv[i].indexOf('=');
            args.put(argv[i].substring(0, eq), argv[i].substring(eq + 1));
        }
        int count = Integer.parseInt(args.get("count"));
        int first = Integer.parseInt(args.getOrDefault("first", "0"));
        String run = args.getOrDefault("run", "run");
        boolean localUnknown = args.getOrDefault("local", "mixed").equals("unknown");
        boolean checkUnknown = args.getOrDefault("check", "resolve").equals("unknown");
        int expectChecks = Integer.parseInt(args.getOrDefault("expectChecks", "0"));
        long holdMs = Long.parseLong(args.getOrDefault("holdMs", "0"));
        boolean haltAfterSend = Boolean.parseBoolean(args.getOrDefault("haltAfterSend", "false"));

        PrintWriter decisions = args.containsKey("decisions")
            ? new PrintWriter(new FileWriter(args.get("decisions"), true), true)
            : null;
        Set<Integer> checked = ConcurrentHashMap.newKeySet();
        // The checked ones whose local transaction said UNKNOW: the broker must ask about
        // each of those; about the others only when it has not heard their answer yet.
        Set<Integer> checkedUnknown = ConcurrentHashMap.newKeySet();
        AtomicLong checks = new AtomicLong();
        TransactionMQProducer producer = new TransactionMQProducer(args.get("group"));
        producer.setNamesrvAddr(args.get("namesrv"));
        // A busy test host can take longer than the default 3 s; a send is not retried.
        producer.setSendMsgTimeout(10000);
        producer.setTransactionListener(new TransactionListener() {
            @Override
            public LocalTransactionState executeLocalTransaction(Message msg, Object arg) {
                if (localUnknown) {
                    return LocalTransactionState.UNKNOW;
                }
                int index = index(msg.getBody());
                switch (index % 3) {
                    case 0:
                        return commit(index);
                    case 1:
                        return LocalTransactionState.ROLLBACK_MESSAGE;
                    default:
                        return LocalTransactionState.UNKNOW;
                }
            }

            @Override
            public LocalTransactionState checkLocalTransaction(MessageExt msg) {
                checks.incrementAndGet();
                int index = index(msg.getBody());
                checked.add(index);
                if (localUnknown || index % 3 == 2) {
                    checkedUnknown.add(index);
                }
                if (checkUnknown) {
                    return LocalTransactionState.UNKNOW;
                }
                return committed(index) ? commit(index) : LocalTransactionState.ROLLBACK_MESSAGE;
            }

            private LocalTransactionState commit(int index) {
                if (decisions != null) {
                    synchronized (decisions) {
                        decisions.println(index + "," + System.currentTimeMillis());
                    }
                }
                return LocalTransactionState.COMMIT_MESSAGE;
            }
        });
        producer.start();
        long sent = 0;
        long failed = 0;
        String firstError = null;
        for (int n = 0; n < count; n++) {
            int index = first + n;
            Message m = new Message(args.get("topic"), "TagA", (run + "-" + index + "-").getBytes(StandardCharsets.UTF_8));
            m.setKeys(run + "-key-" + index);
            try {
                TransactionSendResult r = producer.sendMessageInTransaction(m, null);
                if (r.getSendStatus() == SendStatus.SEND_OK) {
                    sent++;
                } else {
                    failed++;
                }
            } catch (Exception e) {
                failed++;
                if (firstError == null) {
                    firstError = Harness.describe(e);
                }
            }
        }
        if (haltAfterSend) {
            System.out.println("RESULT {\"sent\":" + sent + ",\"failed\":" + failed + ",\"halted\":true}");
            System.out.flush();
            Runtime.getRuntime().halt(0);
        }
        long deadline = System.currentTimeMillis() + holdMs;
        while (System.currentTimeMillis() < deadline && (expectChecks == 0 || checkedUnknown.size() < expectChecks)) {
            Thread.sleep(50);
        }
        // The answers to the last checks are oneway sends still in flight.
        Thread.sleep(1000);
        producer.shutdown();
        if (decisions != null) {
            decisions.close();
        }
        System.out.println("RESULT {\"sent\":" + sent + ",\"failed\":" + failed + ",\"checks\":" + checks.get()
            + ",\"checked\":" + checked.size() + ",\"checkedUnknown\":" + checkedUnknown.size() + ",\"firstError\":"
            + Harness.quote(firstError) + "}");
        System.out.flush();
        System.exit(0);
    }

    /**
     * The outcome of message i's local transaction as the checker finds it: committed when
     * i mod 3 is 0 (the local transaction said so, but the broker may not have heard) or
     * when i mod 6 is 2 (it was unknown and then committed).
     */
    private static boolean committed(int index) {
        return index % 3 == 0 || index % 6 == 2;
    }

    private static int index(byte[] body) {
        String[] parts = new String(body, StandardCharsets.UTF_8).split("-", 3);
        return Integer.parseInt(parts[1]);
    }
}
