// SPDX-License-Identifier: MIT

package mxgw

import (
	"io"
	"os"
	"runtime"
	"sync"
	"time"

	"libmxgw.org/mxgw/internal/capi"
)

// QueueState is a message state (one spool directory each).
type QueueState int

const (
	QueueIncoming QueueState = 1
	QueueActive   QueueState = 2
	QueueDeferred QueueState = 3
	QueueHold     QueueState = 4
	QueueFailed   QueueState = 5
	QueueCorrupt  QueueState = 6
)

func (s QueueState) String() string {
	if n := capi.Mxgw_queue_state_name(int(s)); n != "" {
		return n
	}
	return "removed"
}

// RcptState is a recipient's delivery state.
type RcptState int

const (
	RcptPending   RcptState = 0
	RcptDelivered RcptState = 1
	RcptFailed    RcptState = 2
	RcptDeferred  RcptState = 3
)

// QueueOption keys (options before Open, and counters) for the queue.
type QueueOption int

const (
	QueueOptCreate       QueueOption = 1
	QueueOptOwner        QueueOption = 2
	QueueOptAsyncWorkers QueueOption = 3
	QueueOptMaxBatch     QueueOption = 4
	QueueOptSync         QueueOption = 5
	// The incoming journal (owner only, off by default): a message whose
	// body fits QueueOptJournalMaxBody is committed by appending it to a
	// journal segment instead of two files of its own (one write and one
	// fdatasync per group commit). Such a message has no body file
	// (QueueInfo.BodyPath is ""): read it with QueueEntry.OpenBody or Body.
	QueueOptJournal        QueueOption = 6
	QueueOptJournalMaxBody QueueOption = 7 // octets, 1 KiB..64 MiB [1 MiB]
	QueueOptJournalSegment QueueOption = 8 // segment size, octets [32 MiB]
	QueueOptJournalMaxMsgs QueueOption = 9 // most messages in the journal [100000]

	QueueStatCommits         QueueOption = 100
	QueueStatCommitErrors    QueueOption = 101
	QueueStatFileSyncs       QueueOption = 102
	QueueStatDirSyncs        QueueOption = 103
	QueueStatBatches         QueueOption = 104
	QueueStatRecoveredActive QueueOption = 105
	QueueStatQuarantined     QueueOption = 106
	QueueStatOrphansRemoved  QueueOption = 107
	QueueStatRecovered       QueueOption = 108

	QueueStatJournalCommits   QueueOption = 109 // commits into the journal
	QueueStatJournalSpills    QueueOption = 110 // journal messages written out as files
	QueueStatJournalMessages  QueueOption = 111 // messages in the journal now
	QueueStatJournalSegments  QueueOption = 112 // journal segment files now
	QueueStatJournalRecovered QueueOption = 113 // journal messages moved to incoming at open
	QueueStatJournalTorn      QueueOption = 114 // segments with an unreadable tail at open
)

// QueueOp is an operator action for Queue.Manage.
type QueueOp int

const (
	QueueOpHold    QueueOp = 1
	QueueOpRelease QueueOp = 2
	QueueOpDelete  QueueOp = 3
	QueueOpRequeue QueueOp = 4
	// QueueOpFlush makes deferred messages due now, keeping their
	// recipients' results (postqueue -f).
	QueueOpFlush QueueOp = 5
)

// Queue is a durable spool directory. It may be used by any number of
// goroutines at once (the library locks internally).
type Queue struct {
	mu sync.RWMutex // guards p against Close only
	p  uintptr
}

// NewQueue creates a handle for the spool dir; set options, then Open.
func NewQueue(dir string) (*Queue, error) {
	var p uintptr
	if err := check(capi.Mxgw_queue_new(&p, dir), "NewQueue", nil); err != nil {
		return nil, err
	}
	q := &Queue{p: p}
	runtime.SetFinalizer(q, (*Queue).Close)
	return q, nil
}

// OpenQueue is NewQueue followed by Open with the default options.
func OpenQueue(dir string) (*Queue, error) {
	q, err := NewQueue(dir)
	if err != nil {
		return nil, err
	}
	if err := q.Open(); err != nil {
		q.Close()
		return nil, err
	}
	return q, nil
}

func (q *Queue) do(op string, f func(p uintptr) int) (int, error) {
	q.mu.RLock()
	defer q.mu.RUnlock()
	if q.p == 0 {
		return 0, errClosedHandle(op)
	}
	rc := f(q.p)
	return rc, check(rc, op, nil)
}

// SetOption sets an option before Open.
func (q *Queue) SetOption(key QueueOption, v int64) error {
	_, err := q.do("Queue.SetOption", func(p uintptr) int { return capi.Mxgw_queue_set_int(p, int(key), v) })
	return err
}

// Stat reads an option or a counter.
func (q *Queue) Stat(key QueueOption) (int64, error) {
	var v int64
	_, err := q.do("Queue.Stat", func(p uintptr) int { return capi.Mxgw_queue_get_int(p, int(key), &v) })
	return v, err
}

// Open creates the directories, takes the lock and recovers (as owner).
func (q *Queue) Open() error {
	_, err := q.do("Queue.Open", func(p uintptr) int { return capi.Mxgw_queue_open(p) })
	return err
}

// Count returns the number of messages in state.
func (q *Queue) Count(state QueueState) (int, error) {
	return q.do("Queue.Count", func(p uintptr) int { return capi.Mxgw_queue_count(p, int(state)) })
}

// QueueRcpt is a recipient of a queued message.
type QueueRcpt struct {
	Addr   string
	Notify int    // mxgw_notify bits, 0 = none
	ORcpt  string // "type;address" or ""
	// Read back from entries:
	State RcptState
	Code  int
	Enh   string
	Text  string
}

// QueueEnvelope is what Submit stores with a message.
type QueueEnvelope struct {
	Sender     string // "" for <>
	Rcpts      []QueueRcpt
	EnvID      string
	Ret        string // "FULL" or "HDRS"
	Body       string // "7BIT" or "8BITMIME"
	ClientAddr string
	ClientHelo string
	ClientHost string
	TLSJSON    string // any JSON value
	SPFJSON    string // any JSON value
	SMTPUTF8   bool
}

// Submit writes and durably commits one message (body as it will be
// delivered: dot-unstuffed, CRLF) and returns its queue ID. Only after a
// nil error may an SMTP server send its 250. Safe from many goroutines:
// their commits share directory fsyncs (group commit).
func (q *Queue) Submit(env *QueueEnvelope, body []byte) (string, error) {
	const op = "Queue.Submit"
	q.mu.RLock()
	defer q.mu.RUnlock()
	if q.p == 0 {
		return "", errClosedHandle(op)
	}
	var m uintptr
	if err := check(capi.Mxgw_queue_begin(q.p, &m), op, nil); err != nil {
		return "", err
	}
	fail := func(rc int) (string, error) {
		capi.Mxgw_queue_msg_free(m)
		return "", check(rc, op, nil)
	}
	for off := 0; off < len(body); off += 1 << 20 {
		end := off + 1<<20
		if end > len(body) {
			end = len(body)
		}
		if rc := capi.Mxgw_queue_write(m, body[off:end]); rc < 0 {
			return fail(rc)
		}
	}
	if rc := capi.Mxgw_queue_msg_set_str(m, 2, env.Sender); rc < 0 {
		return fail(rc)
	}
	for key, v := range map[int]string{3: env.EnvID, 4: env.Ret, 5: env.Body, 6: env.ClientAddr,
		7: env.ClientHelo, 8: env.ClientHost, 9: env.TLSJSON, 10: env.SPFJSON} {
		if v != "" {
			if rc := capi.Mxgw_queue_msg_set_str(m, key, v); rc < 0 {
				return fail(rc)
			}
		}
	}
	if env.SMTPUTF8 {
		capi.Mxgw_queue_msg_set_int(m, 100, 1)
	}
	for _, r := range env.Rcpts {
		if rc := capi.Mxgw_queue_msg_add_rcpt(m, r.Addr, r.Notify, r.ORcpt); rc < 0 {
			return fail(rc)
		}
	}
	var idb []byte
	capi.Mxgw_queue_msg_id(m, &idb)
	// commit consumes the message either way
	if err := check(capi.Mxgw_queue_commit(m), op, nil); err != nil {
		return "", err
	}
	return string(idb), nil
}

// Load reads message id's metadata from whichever state holds it.
func (q *Queue) Load(id string) (*QueueEntry, error) {
	var e uintptr
	if _, err := q.do("Queue.Load", func(p uintptr) int { return capi.Mxgw_queue_load(p, id, &e) }); err != nil {
		return nil, err
	}
	return newEntry(e), nil
}

// Take claims the next due message for delivery (moved to active). It
// returns ErrNotFound when nothing is due.
func (q *Queue) Take(now time.Time) (*QueueEntry, error) {
	var e uintptr
	if _, err := q.do("Queue.Take", func(p uintptr) int { return capi.Mxgw_queue_take(p, now.Unix(), &e) }); err != nil {
		return nil, err
	}
	return newEntry(e), nil
}

// Save rewrites an entry's metadata atomically.
func (q *Queue) Save(e *QueueEntry) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	_, err := q.do("Queue.Save", func(p uintptr) int { return capi.Mxgw_queue_save(p, e.p) })
	return err
}

// Finish ends a delivery attempt of an active entry: the message is
// removed (every recipient delivered: state 0), deferred until next, or
// failed.
func (q *Queue) Finish(e *QueueEntry, next time.Time) (QueueState, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	rc, err := q.do("Queue.Finish", func(p uintptr) int { return capi.Mxgw_queue_finish(p, e.p, next.Unix()) })
	return QueueState(rc), err
}

// List returns the IDs in state, oldest first.
func (q *Queue) List(state QueueState) ([]string, error) {
	var it uintptr
	if _, err := q.do("Queue.List", func(p uintptr) int { return capi.Mxgw_queue_iter_new(p, int(state), &it) }); err != nil {
		return nil, err
	}
	defer capi.Mxgw_queue_iter_free(it)
	var ids []string
	for {
		var e uintptr
		rc := capi.Mxgw_queue_iter_next(it, &e)
		if rc == 0 {
			return ids, nil
		}
		if rc < 0 && Code(rc) != CodeSyntax {
			return ids, check(rc, "Queue.List", nil)
		}
		var b []byte
		if capi.Mxgw_queue_iter_id(it, &b) == 0 {
			ids = append(ids, string(b))
		}
	}
}

// Manage applies an operator action to message id, or with id "" to every
// message of state (0: every state it applies to); it returns how many
// messages changed.
func (q *Queue) Manage(op QueueOp, id string, state QueueState) (int, error) {
	return q.do("Queue.Manage", func(p uintptr) int { return capi.Mxgw_queue_manage(p, int(op), id, int(state)) })
}

// Close closes the spool (pending commits complete first).
func (q *Queue) Close() error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.p != 0 {
		capi.Mxgw_queue_free(q.p)
		q.p = 0
	}
	runtime.SetFinalizer(q, nil)
	return nil
}

// QueueEntry is a loaded message's metadata.
type QueueEntry struct {
	mu sync.Mutex
	p  uintptr
}

func newEntry(p uintptr) *QueueEntry {
	e := &QueueEntry{p: p}
	runtime.SetFinalizer(e, (*QueueEntry).Close)
	return e
}

func (e *QueueEntry) str(key int) string {
	var b []byte
	capi.Mxgw_queue_entry_get_str(e.p, key, &b)
	return string(b)
}

func (e *QueueEntry) num(key int) int64 {
	var v int64
	capi.Mxgw_queue_entry_get_int(e.p, key, &v)
	return v
}

// QueueInfo is a snapshot of an entry.
type QueueInfo struct {
	ID, Sender, EnvID, Ret, Body       string
	ClientAddr, ClientHelo, ClientHost string
	BodyPath                           string // "" for a message in the journal
	InJournal                          bool   // no body file: use OpenBody or Body
	SMTPUTF8                           bool
	Arrival, NextAttempt               time.Time
	Attempts                           int
	Size                               int64
	State                              QueueState
	Rcpts                              []QueueRcpt
}

// Info copies the entry's metadata.
func (e *QueueEntry) Info() QueueInfo {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.p == 0 {
		return QueueInfo{}
	}
	in := QueueInfo{ID: e.str(1), Sender: e.str(2), EnvID: e.str(3), Ret: e.str(4), Body: e.str(5),
		ClientAddr: e.str(6), ClientHelo: e.str(7), ClientHost: e.str(8), BodyPath: e.str(11),
		SMTPUTF8: e.num(100) == 1, Arrival: time.Unix(e.num(101), 0), Attempts: int(e.num(102)),
		NextAttempt: time.Unix(e.num(103), 0), Size: e.num(104), State: QueueState(e.num(105)),
		InJournal: e.num(107) == 1}
	n := e.num(106)
	for i := int64(0); i < n; i++ {
		rs := func(k int) string {
			var b []byte
			capi.Mxgw_queue_entry_rcpt_get_str(e.p, i, k, &b)
			return string(b)
		}
		ri := func(k int) int {
			var v int64
			capi.Mxgw_queue_entry_rcpt_get_int(e.p, i, k, &v)
			return int(v)
		}
		in.Rcpts = append(in.Rcpts, QueueRcpt{Addr: rs(1), ORcpt: rs(2), Enh: rs(3), Text: rs(4),
			State: RcptState(ri(100)), Notify: ri(101), Code: ri(102)})
	}
	return in
}

// JSON returns the whole metadata as JSON (what mxgw-queue show prints).
func (e *QueueEntry) JSON() ([]byte, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.p == 0 {
		return nil, errClosedHandle("QueueEntry.JSON")
	}
	var b []byte
	err := check(capi.Mxgw_queue_entry_json(e.p, &b), "QueueEntry.JSON", nil)
	return b, err
}

// InJournal reports whether the message is in the queue's journal (it has
// no body file of its own).
func (e *QueueEntry) InJournal() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.p != 0 && e.num(107) == 1
}

// QueueBody is an open message body: Size() octets at Offset() in File()
// (the whole body file, or a range of a journal segment). It reads with
// ReadAt (pread) through the embedded io.SectionReader, so the file's own
// position is never used: do not read File() directly. Close it.
type QueueBody struct {
	*io.SectionReader
	f   *os.File
	off int64
}

// File is the open file the body lies in (owned by the QueueBody).
func (b *QueueBody) File() *os.File { return b.f }

// Offset is where the body starts in File().
func (b *QueueBody) Offset() int64 { return b.off }

// Close closes the file.
func (b *QueueBody) Close() error { return b.f.Close() }

// OpenBody opens the message body wherever it is: its own file or a
// journal segment. The caller closes the result. ErrNotFound when the
// message is gone.
func (e *QueueEntry) OpenBody() (*QueueBody, error) {
	const op = "QueueEntry.OpenBody"
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.p == 0 {
		return nil, errClosedHandle(op)
	}
	var fd int32
	var off, n int64
	if err := check(capi.Mxgw_queue_entry_body(e.p, &fd, &off, &n), op, nil); err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(fd), "queue body "+e.str(1))
	return &QueueBody{SectionReader: io.NewSectionReader(f, off, n), f: f, off: off}, nil
}

// Body reads the whole message body (as it will be delivered: CRLF,
// dot-unstuffed).
func (e *QueueEntry) Body() ([]byte, error) {
	b, err := e.OpenBody()
	if err != nil {
		return nil, err
	}
	defer b.Close()
	buf := make([]byte, b.Size())
	if _, err := io.ReadFull(b, buf); err != nil {
		return nil, &Error{Code: CodeIO, Op: "QueueEntry.Body", Msg: err.Error()}
	}
	return buf, nil
}

// SetRcpt records a delivery result for recipient idx (in memory; Save or
// Finish makes it durable).
func (e *QueueEntry) SetRcpt(idx int, state RcptState, code int, enh, text string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.p == 0 {
		return errClosedHandle("QueueEntry.SetRcpt")
	}
	return check(capi.Mxgw_queue_entry_set_rcpt(e.p, int64(idx), int(state), code, enh, text),
		"QueueEntry.SetRcpt", nil)
}

// Close frees the entry (the message stays in the spool).
func (e *QueueEntry) Close() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.p != 0 {
		capi.Mxgw_queue_entry_free(e.p)
		e.p = 0
	}
	runtime.SetFinalizer(e, nil)
	return nil
}
