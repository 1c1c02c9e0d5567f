// The Go client (github.com/apache/rocketmq-client-go/v2) in Rocketry's tests: a command line
// in the style of tests/java-harness/.../Features.java. It sends or consumes, writes every
// delivery to an output file, one line each, and ends with one line `RESULT {json}`.
//
//	go-harness produce namesrv=H:P topic=T count=N [first=0] [run=ID] [mode=sync|async|oneway]
//	                   [tags=A,B,C] [prop=NAME] [delayLevel=L] [orderKeys=K]
//	go-harness consume namesrv=H:P topic=T group=G out=FILE [type=push|orderly|pull]
//	                   [filter=TAGEXPR] [sql=EXPR] [run=ID] [expect=N] [deliveries=N]
//	                   [fail=false] [maxReconsume=-1] [timeoutMs=60000]
//	go-harness transact namesrv=H:P topic=T group=G count=N [run=ID] [holdMs=60000]
//
// Message i of run R has the body "R-i-" and the key "R-key-i"; with tags, tag number
// i mod the list's length; with prop, property NAME = i mod 10; with orderKeys, sharding key
// i mod K, which the client's hash selector turns into a queue. A delivery line is
//
//	index,queueId,queueOffset,reconsumeTimes,receiveMs,bornMs,storeMs,tags,topic
//
// A consumer ends once it has `expect` distinct messages of its run, or `deliveries`
// deliveries, or at the timeout. With fail=true its listener always asks for a retry.
//
// A transactional producer (transact) sends message i in a transaction whose local part
// commits when i mod 3 is 0, rolls back when it is 1 and answers unknown when it is 2. Asked
// by the broker, its checker commits i when i mod 3 is 0 or i mod 6 is 2 and rolls back the
// rest. It stays up until it has been asked about every unknown one, or holdMs passed.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	rocketmq "github.com/apache/rocketmq-client-go/v2"
	"github.com/apache/rocketmq-client-go/v2/consumer"
	"github.com/apache/rocketmq-client-go/v2/primitive"
	"github.com/apache/rocketmq-client-go/v2/producer"
	"github.com/apache/rocketmq-client-go/v2/rlog"
)

// args are the key=value words after the verb.
type args map[string]string

func (a args) str(key, fallback string) string {
	if v, ok := a[key]; ok {
		return v
	}
	return fallback
}

func (a args) num(key string, fallback int) int {
	v, ok := a[key]
	if !ok {
		return fallback
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		fail("%s=%q is not a number", key, v)
	}
	return n
}

func (a args) required(key string) string {
	v, ok := a[key]
	if !ok || v == "" {
		fail("%s= is required", key)
	}
	return v
}

func fail(format string, values ...any) {
	fmt.Fprintf(os.Stderr, "go-harness: "+format+"\n", values...)
	os.Exit(2)
}

func main() {
	if len(os.Args) < 2 {
		fail("usage: go-harness produce|consume key=value...")
	}
	parsed := args{}
	for _, word := range os.Args[2:] {
		key, value, ok := strings.Cut(word, "=")
		if !ok {
			fail("%q is not key=value", word)
		}
		parsed[key] = value
	}
	// The client logs every rebalance at info; its warnings are what a failing test needs.
	rlog.SetLogLevel("warn")
	var result map[string]any
	switch os.Args[1] {
	case "produce":
		result = produce(parsed)
	case "consume":
		result = consume(parsed)
	case "transact":
		result = transact(parsed)
	default:
		fail("unknown verb %q", os.Args[1])
	}
	line, err := json.Marshal(result)
	if err != nil {
		fail("result: %v", err)
	}
	fmt.Printf("RESULT %s\n", line)
}

func produce(a args) map[string]any {
	topic, run, mode := a.required("topic"), a.str("run", "run"), a.str("mode", "sync")
	count, first := a.num("count", 0), a.num("first", 0)
	tags := strings.Split(a.str("tags", "TagA"), ",")
	prop, delayLevel, orderKeys := a["prop"], a.num("delayLevel", 0), a.num("orderKeys", 0)
	options := []producer.Option{
		producer.WithNsResolver(primitive.NewPassthroughResolver([]string{a.required("namesrv")})),
		producer.WithGroupName("go_harness_producer"),
		producer.WithRetry(2),
	}
	if orderKeys > 0 {
		options = append(options, producer.WithQueueSelector(producer.NewHashQueueSelector()))
	}
	p, err := rocketmq.NewProducer(options...)
	if err != nil {
		fail("producer: %v", err)
	}
	if err := p.Start(); err != nil {
		fail("producer start: %v", err)
	}
	defer p.Shutdown()

	var (
		mu         sync.Mutex
		sent       int
		firstError string
		firstIDs   = map[string]any{}
		pending    sync.WaitGroup
	)
	// Counts one send's outcome; the ids of message `first` let a test look it up.
	settle := func(index int, res *primitive.SendResult, err error) {
		mu.Lock()
		defer mu.Unlock()
		if err == nil && (res == nil || res.Status == primitive.SendOK) {
			sent++
			if index == first && res != nil {
				firstIDs["msgId"], firstIDs["offsetMsgId"] = res.MsgID, res.OffsetMsgID
				firstIDs["queueId"], firstIDs["queueOffset"] = res.MessageQueue.QueueId, res.QueueOffset
			}
		} else if firstError == "" {
			if err == nil {
				err = fmt.Errorf("send status %d", res.Status)
			}
			firstError = err.Error()
		}
	}
	ctx := context.Background()
	for index := first; index < first+count; index++ {
		m := primitive.NewMessage(topic, []byte(fmt.Sprintf("%s-%d-", run, index)))
		m.WithTag(tags[index%len(tags)])
		m.WithKeys([]string{fmt.Sprintf("%s-key-%d", run, index)})
		if prop != "" {
			m.WithProperty(prop, strconv.Itoa(index%10))
		}
		if delayLevel > 0 {
			m.WithDelayTimeLevel(delayLevel)
		}
		if orderKeys > 0 {
			m.WithShardingKey(strconv.Itoa(index % orderKeys))
		}
		switch mode {
		case "sync":
			res, err := p.SendSync(ctx, m)
			settle(index, res, err)
		case "async":
			pending.Add(1)
			index := index
			err := p.SendAsync(ctx, func(_ context.Context, res *primitive.SendResult, err error) {
				defer pending.Done()
				settle(index, res, err)
			}, m)
			if err != nil {
				pending.Done()
				settle(index, nil, err)
			}
		case "oneway":
			// Nothing comes back: "sent" counts what left without error, and the test counts
			// what arrived.
			settle(index, nil, p.SendOneWay(ctx, m))
		default:
			fail("unknown mode %q", mode)
		}
	}
	pending.Wait()
	return map[string]any{"sent": sent, "failed": count - sent, "firstError": firstError, "first": firstIDs}
}

// deliveryLog writes one line per delivery of the run and counts them.
type deliveryLog struct {
	mu         sync.Mutex
	out        *bufio.Writer
	run        string
	seen       map[int]bool
	deliveries int
}

func (l *deliveryLog) record(msgs []*primitive.MessageExt) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now().UnixMilli()
	for _, m := range msgs {
		parts := strings.SplitN(string(m.Body), "-", 3)
		if len(parts) < 3 || parts[0] != l.run {
			continue // another run's message on a shared topic
		}
		index, err := strconv.Atoi(parts[1])
		if err != nil {
			continue
		}
		fmt.Fprintf(l.out, "%d,%d,%d,%d,%d,%d,%s,%s,%d\n", index, m.Queue.QueueId, m.QueueOffset,
			m.ReconsumeTimes, now, m.BornTimestamp, m.GetTags(), m.Topic, m.StoreTimestamp)
		l.seen[index] = true
		l.deliveries++
	}
	l.out.Flush()
}

func (l *deliveryLog) counts() (unique, deliveries int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.seen), l.deliveries
}

func consume(a args) map[string]any {
	topic, group, kind := a.required("topic"), a.required("group"), a.str("type", "push")
	expect, wantDeliveries := a.num("expect", -1), a.num("deliveries", -1)
	timeout := time.Duration(a.num("timeoutMs", 60000)) * time.Millisecond
	retry := a.str("fail", "false") == "true"
	file, err := os.OpenFile(a.required("out"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		fail("out: %v", err)
	}
	defer file.Close()
	log := &deliveryLog{out: bufio.NewWriter(file), run: a.str("run", "run"), seen: map[int]bool{}}

	selector := consumer.MessageSelector{Type: consumer.TAG, Expression: a.str("filter", "*")}
	if sql, ok := a["sql"]; ok {
		selector = consumer.MessageSelector{Type: consumer.SQL92, Expression: sql}
	}
	options := []consumer.Option{
		consumer.WithNsResolver(primitive.NewPassthroughResolver([]string{a.required("namesrv")})),
		consumer.WithGroupName(group),
		consumer.WithConsumeFromWhere(consumer.ConsumeFromFirstOffset),
		consumer.WithMaxReconsumeTimes(int32(a.num("maxReconsume", -1))),
		consumer.WithConsumerOrder(kind == "orderly"),
	}
	var stop func() error
	switch kind {
	case "push", "orderly":
		c, err := rocketmq.NewPushConsumer(options...)
		if err != nil {
			fail("push consumer: %v", err)
		}
		err = c.Subscribe(topic, selector, func(_ context.Context, msgs ...*primitive.MessageExt) (consumer.ConsumeResult, error) {
			log.record(msgs)
			if retry {
				return consumer.ConsumeRetryLater, nil
			}
			return consumer.ConsumeSuccess, nil
		})
		if err != nil {
			fail("subscribe: %v", err)
		}
		if err := c.Start(); err != nil {
			fail("push consumer start: %v", err)
		}
		stop = c.Shutdown
	case "pull":
		c, err := rocketmq.NewPullConsumer(options...)
		if err != nil {
			fail("pull consumer: %v", err)
		}
		if err := c.Subscribe(topic, selector); err != nil {
			fail("subscribe: %v", err)
		}
		if err := c.Start(); err != nil {
			fail("pull consumer start: %v", err)
		}
		done := make(chan struct{})
		polling := sync.WaitGroup{}
		polling.Add(1)
		go func() {
			defer polling.Done()
			for {
				select {
				case <-done:
					return
				default:
				}
				request, err := c.Poll(context.Background(), time.Second)
				if err != nil {
					continue // nothing within the second, or a batch of a queue a rebalance took away
				}
				log.record(request.GetMsgList())
				result := consumer.ConsumeSuccess
				if retry {
					result = consumer.ConsumeRetryLater
				}
				c.ACK(context.Background(), request, result)
			}
		}()
		stop = func() error { close(done); polling.Wait(); return c.Shutdown() }
	default:
		fail("unknown type %q", kind)
	}

	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		unique, deliveries := log.counts()
		if (expect >= 0 && unique >= expect) || (wantDeliveries >= 0 && deliveries >= wantDeliveries) {
			// A moment more, so that a duplicate would still show, and the send-back of the
			// last failed message (the client makes it after the listener returns) is done.
			time.Sleep(time.Second)
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := stop(); err != nil {
		fmt.Fprintf(os.Stderr, "go-harness: shutdown: %v\n", err)
	}
	unique, deliveries := log.counts()
	return map[string]any{"unique": unique, "deliveries": deliveries}
}

// checker is a transaction listener: local outcomes by index, and the answers to checks.
type checker struct {
	mu             sync.Mutex
	checked        map[int]bool
	checkedUnknown map[int]bool
}

func bodyIndex(body []byte) int {
	parts := strings.SplitN(string(body), "-", 3)
	if len(parts) < 3 {
		return -1
	}
	index, err := strconv.Atoi(parts[1])
	if err != nil {
		return -1
	}
	return index
}

func (c *checker) ExecuteLocalTransaction(m *primitive.Message) primitive.LocalTransactionState {
	switch bodyIndex(m.Body) % 3 {
	case 0:
		return primitive.CommitMessageState
	case 1:
		return primitive.RollbackMessageState
	default:
		return primitive.UnkonwnState
	}
}

func (c *checker) CheckLocalTransaction(m *primitive.MessageExt) primitive.LocalTransactionState {
	index := bodyIndex(m.Body)
	c.mu.Lock()
	c.checked[index] = true
	if index%3 == 2 {
		c.checkedUnknown[index] = true
	}
	c.mu.Unlock()
	if index%3 == 0 || index%6 == 2 {
		return primitive.CommitMessageState
	}
	return primitive.RollbackMessageState
}

func (c *checker) counts() (checked, unknown int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.checked), len(c.checkedUnknown)
}

func transact(a args) map[string]any {
	topic, run, count := a.required("topic"), a.str("run", "run"), a.num("count", 0)
	hold := time.Duration(a.num("holdMs", 60000)) * time.Millisecond
	listener := &checker{checked: map[int]bool{}, checkedUnknown: map[int]bool{}}
	p, err := rocketmq.NewTransactionProducer(listener,
		producer.WithNsResolver(primitive.NewPassthroughResolver([]string{a.required("namesrv")})),
		producer.WithGroupName(a.required("group")),
		producer.WithRetry(2),
	)
	if err != nil {
		fail("transaction producer: %v", err)
	}
	if err := p.Start(); err != nil {
		fail("transaction producer start: %v", err)
	}
	sent, firstError := 0, ""
	for index := 0; index < count; index++ {
		m := primitive.NewMessage(topic, []byte(fmt.Sprintf("%s-%d-", run, index)))
		m.WithKeys([]string{fmt.Sprintf("%s-key-%d", run, index)})
		res, err := p.SendMessageInTransaction(context.Background(), m)
		if err == nil && res.Status == primitive.SendOK {
			sent++
		} else if firstError == "" {
			if err == nil {
				err = fmt.Errorf("send status %d", res.Status)
			}
			firstError = err.Error()
		}
	}
	unknowns := 0
	for index := 0; index < count; index++ {
		if index%3 == 2 {
			unknowns++
		}
	}
	deadline := time.Now().Add(hold)
	for time.Now().Before(deadline) {
		if _, unknown := listener.counts(); unknown >= unknowns {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The answers to the last checks are oneway requests still in flight.
	time.Sleep(time.Second)
	if err := p.Shutdown(); err != nil {
		fmt.Fprintf(os.Stderr, "go-harness: shutdown: %v\n", err)
	}
	checked, unknown := listener.counts()
	return map[string]any{"sent": sent, "failed": count - sent, "firstError": firstError,
		"checked": checked, "checkedUnknown": unknown}
}
