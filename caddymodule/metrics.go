package caddymodule

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/caddy-session/caddy-session/storage"
)

// The module's Prometheus metrics. The collectors are created once per
// process and registered with the registry of every config that provisions
// a session handler: Caddy makes a new registry on each config load, and
// registering the same collectors again (ignoring "already registered")
// keeps counters counting across reloads instead of starting over.
//
// Every series carries the handler's id (admin_id, by default the cookie
// name), so that two session handlers in one config stay apart; the request
// path touches only children resolved when the handler is provisioned, so a
// request allocates nothing for metrics.
const metricsNamespace, metricsSubsystem = "caddy", "session"

// sessionMetrics holds the package's collectors.
var sessionMetrics = struct {
	created, confirmed, loaded, written, rotated, destroyed, expired, moved *prometheus.CounterVec
	api                                                                     *prometheus.CounterVec
	storeDuration                                                           *prometheus.HistogramVec
	storeErrors                                                             *prometheus.CounterVec
	cookieBytes, cookieChunks                                               *prometheus.HistogramVec
	storeUnavailable                                                        *prometheus.CounterVec
}{
	created: sessionCounter("created_total",
		"Sessions created (the first write to a session).", "id", "store"),
	confirmed: sessionCounter("confirmed_total",
		"Server-store sessions confirmed by a read: a request presented the cookie of a session created by an earlier one (an API write confirms in its merge, uncounted here). created_total minus confirmed_total is roughly the throwaway sessions (a flood of single-use sessions shows there).", "id", "store"),
	loaded: sessionCounter("loaded_total",
		"Requests that carried a live session, read from the cookie and the store.", "id", "store"),
	written: sessionCounter("written_total",
		"Session writes (API POST or PATCH, upstream X-Session-Set), creating ones included.", "id", "store"),
	rotated: sessionCounter("rotated_total",
		"Sessions given a new ID (X-Session-Rotate).", "id", "store"),
	destroyed: sessionCounter("destroyed_total",
		"Sessions destroyed (API DELETE, X-Session-Destroy, the admin API).", "id", "store"),
	expired: sessionCounter("expired_total",
		"Requests whose valid session cookie named a session that is over: expired, or for server stores also evicted or destroyed elsewhere.", "id", "store"),
	moved: sessionCounter("moved_total",
		"Sessions moved from previous_store into the store (each once).", "id", "store"),
	api: sessionCounter("api_requests_total",
		"Requests answered by the session API, by method and status code.", "id", "method", "code"),
	storeDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: metricsNamespace,
		Subsystem: metricsSubsystem,
		Name:      "store_operation_duration_seconds",
		Help:      "Latency of session store operations (load, merge, touch, delete, rotate, confirm).",
		Buckets:   []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1},
	}, []string{"id", "store", "operation"}),
	storeErrors: sessionCounter("store_errors_total",
		"Session store operations that failed (the store was unreachable or broken; refusals such as limits are not errors).", "id", "store", "operation"),
	cookieBytes: prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: metricsNamespace,
		Subsystem: metricsSubsystem,
		Name:      "cookie_size_bytes",
		Help:      "Size of the session cookie values issued, all chunks together.",
		Buckets:   []float64{128, 256, 512, 1024, 2048, 4096, 8192, 16384},
	}, []string{"id"}),
	cookieChunks: prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: metricsNamespace,
		Subsystem: metricsSubsystem,
		Name:      "cookie_chunks",
		Help:      "Number of cookies a session cookie issued was split into.",
		Buckets:   []float64{1, 2, 3, 4, 6, 8, 16, 32},
	}, []string{"id"}),
	storeUnavailable: sessionCounter("store_unavailable_requests_total",
		"Requests (outside the session API) whose session could not be loaded because the store was unavailable, by the on_store_error policy applied: fail_open (served without a session) or fail_closed (503).", "id", "policy"),
}

func sessionCounter(name, help string, labels ...string) *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: metricsNamespace,
		Subsystem: metricsSubsystem,
		Name:      name,
		Help:      help,
	}, labels)
}

// memoryStoreDescs describe the memory pools' gauges, collected from the
// live pools at scrape time.
var (
	memorySessionsDesc = prometheus.NewDesc(
		prometheus.BuildFQName(metricsNamespace, metricsSubsystem, "memory_sessions"),
		"Sessions held by a memory store pool, counting expired ones not swept yet.",
		[]string{"pool", "max_sessions"}, nil)
	memoryEvictionsDesc = prometheus.NewDesc(
		prometheus.BuildFQName(metricsNamespace, metricsSubsystem, "memory_evictions_total"),
		"Sessions a memory store pool evicted to stay within max_sessions and max_bytes, new (unconfirmed) ones first.",
		[]string{"pool", "max_sessions"}, nil)
	memoryConfirmedEvictionsDesc = prometheus.NewDesc(
		prometheus.BuildFQName(metricsNamespace, metricsSubsystem, "memory_confirmed_evictions_total"),
		"Confirmed sessions a memory store pool evicted: visitors logged out early; raise max_sessions or max_bytes.",
		[]string{"pool", "max_sessions"}, nil)
	memoryNewSessionsDesc = prometheus.NewDesc(
		prometheus.BuildFQName(metricsNamespace, metricsSubsystem, "memory_new_sessions"),
		"Sessions of a memory store pool not confirmed yet (no later request presented their cookie).",
		[]string{"pool", "max_sessions"}, nil)
	memoryBytesDesc = prometheus.NewDesc(
		prometheus.BuildFQName(metricsNamespace, metricsSubsystem, "memory_bytes"),
		"Bytes a memory store pool's sessions take, as counted against max_bytes (encoded size plus bookkeeping).",
		[]string{"pool", "max_sessions"}, nil)
)

// memoryPoolCollector reports every memory pool that a loaded config uses.
type memoryPoolCollector struct{}

// Describe implements prometheus.Collector.
func (memoryPoolCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- memorySessionsDesc
	ch <- memoryEvictionsDesc
	ch <- memoryConfirmedEvictionsDesc
	ch <- memoryNewSessionsDesc
	ch <- memoryBytesDesc
}

// Collect implements prometheus.Collector.
func (memoryPoolCollector) Collect(ch chan<- prometheus.Metric) {
	memoryPools.Range(func(key, value any) bool {
		pool, ok := value.(memoryPool)
		k, _ := key.(string)
		if !ok {
			return true
		}
		// The pool key is name, max_sessions and max_bytes (MemoryStore).
		name, rest, _ := strings.Cut(k, "\x00")
		max, _, _ := strings.Cut(rest, "\x00")
		ch <- prometheus.MustNewConstMetric(memorySessionsDesc, prometheus.GaugeValue, float64(pool.Len()), name, max)
		ch <- prometheus.MustNewConstMetric(memoryEvictionsDesc, prometheus.CounterValue, float64(pool.Evictions()), name, max)
		ch <- prometheus.MustNewConstMetric(memoryConfirmedEvictionsDesc, prometheus.CounterValue, float64(pool.ConfirmedEvictions()), name, max)
		ch <- prometheus.MustNewConstMetric(memoryNewSessionsDesc, prometheus.GaugeValue, float64(pool.NewLen()), name, max)
		ch <- prometheus.MustNewConstMetric(memoryBytesDesc, prometheus.GaugeValue, float64(pool.Bytes()), name, max)
		return true
	})
}

// registerMetrics registers the module's collectors with a config's
// registry. A collector that is there already (another session handler of
// the same config registered it) is fine.
func registerMetrics(reg *prometheus.Registry) error {
	if reg == nil {
		return nil
	}
	m := &sessionMetrics
	for _, c := range []prometheus.Collector{
		m.created, m.confirmed, m.loaded, m.written, m.rotated, m.destroyed, m.expired, m.moved,
		m.api, m.storeDuration, m.storeErrors, m.cookieBytes, m.cookieChunks, m.storeUnavailable,
		memoryPoolCollector{},
	} {
		if err := reg.Register(c); err != nil {
			var already prometheus.AlreadyRegisteredError
			if !errors.As(err, &already) {
				return err
			}
		}
	}
	return nil
}

// apiMethods and apiCodes are the label values of api_requests_total that
// get a pre-resolved child; anything else goes through the vector.
var (
	apiMethods = [...]string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPatch, http.MethodDelete}
	apiCodes   = [...]int{200, 204, 304, 400, 403, 404, 405, 409, 412, 413, 415, 503}
)

// Session events a handler counts.
const (
	evCreated = iota
	evConfirmed
	evLoaded
	evWritten
	evRotated
	evDestroyed
	evExpired
	evFailOpen
	evFailClosed
	evMoved
	numEvents
)

// handlerMetrics are one handler's children of the package's collectors.
// A nil *handlerMetrics counts nothing.
type handlerMetrics struct {
	id, store string

	events                    [numEvents]prometheus.Counter
	cookieBytes, cookieChunks prometheus.Observer

	// api holds a child per known method and code, created on first use
	// (most combinations never happen; a child shows as a series).
	api [len(apiMethods)][len(apiCodes)]atomic.Pointer[counterBox]
}

type counterBox struct{ prometheus.Counter }

// newHandlerMetrics resolves a handler's children.
func newHandlerMetrics(id, store string) *handlerMetrics {
	m := &sessionMetrics
	hm := &handlerMetrics{
		id:           id,
		store:        store,
		cookieBytes:  m.cookieBytes.WithLabelValues(id),
		cookieChunks: m.cookieChunks.WithLabelValues(id),
	}
	for ev, vec := range map[int]*prometheus.CounterVec{
		evCreated: m.created, evConfirmed: m.confirmed, evLoaded: m.loaded, evWritten: m.written,
		evRotated: m.rotated, evDestroyed: m.destroyed, evExpired: m.expired, evMoved: m.moved,
	} {
		hm.events[ev] = vec.WithLabelValues(id, store)
	}
	hm.events[evFailOpen] = m.storeUnavailable.WithLabelValues(id, failOpen)
	hm.events[evFailClosed] = m.storeUnavailable.WithLabelValues(id, failClosed)
	return hm
}

// count adds one to an event's counter.
func (m *handlerMetrics) count(ev int) {
	if m != nil {
		m.events[ev].Inc()
	}
}

// cookie records an issued session cookie: its value's size over all its
// chunks, and how many chunks.
func (m *handlerMetrics) cookie(bytes, chunks int) {
	if m != nil {
		m.cookieBytes.Observe(float64(bytes))
		m.cookieChunks.Observe(float64(chunks))
	}
}

// apiRequest counts one API answer.
func (m *handlerMetrics) apiRequest(method string, code int) {
	if m == nil {
		return
	}
	i, k := -1, -1
	for j, v := range apiMethods {
		if v == method {
			i = j
			break
		}
	}
	for j, v := range apiCodes {
		if v == code {
			k = j
			break
		}
	}
	if i < 0 || k < 0 {
		// Rare (OPTIONS, an odd status): not worth a cached child.
		mlabel := method
		if i < 0 {
			mlabel = "OTHER"
		}
		sessionMetrics.api.WithLabelValues(m.id, mlabel, strconv.Itoa(code)).Inc()
		return
	}
	box := m.api[i][k].Load()
	if box == nil {
		box = &counterBox{sessionMetrics.api.WithLabelValues(m.id, method, strconv.Itoa(code))}
		m.api[i][k].Store(box)
	}
	box.Inc()
}

// Store operations, the operation label of the store metrics.
const (
	opLoad = iota
	opMerge
	opTouch
	opDelete
	opRotate
	opConfirm
	numOps
)

var opNames = [numOps]string{"load", "merge", "touch", "delete", "rotate", "confirm"}

// instrumentedStore times every operation of the store it wraps and counts
// its failures. It is what the handler calls; the admin API uses the store
// itself.
type instrumentedStore struct {
	storage.Store
	duration [numOps]prometheus.Observer
	errors   [numOps]prometheus.Counter
}

func newInstrumentedStore(s storage.Store, id, store string) *instrumentedStore {
	is := &instrumentedStore{Store: s}
	for op, name := range opNames {
		is.duration[op] = sessionMetrics.storeDuration.WithLabelValues(id, store, name)
		is.errors[op] = sessionMetrics.storeErrors.WithLabelValues(id, store, name)
	}
	return is
}

// done records one operation.
func (s *instrumentedStore) done(op int, start time.Time, err error) {
	s.duration[op].Observe(time.Since(start).Seconds())
	if err != nil && isStoreFailure(err) {
		s.errors[op].Inc()
	}
}

// isStoreFailure tells a store failure from a verdict on the request (no
// such session, a refused merge).
func isStoreFailure(err error) bool {
	if errors.Is(err, storage.ErrNotFound) {
		return false // common: checked first, without allocating
	}
	var keyErr *storage.KeyError
	var limErr *storage.LimitError
	var verErr *storage.VersionError
	return !errors.As(err, &keyErr) && !errors.As(err, &limErr) && !errors.As(err, &verErr) &&
		!errors.Is(err, storage.ErrExists)
}

// Load implements storage.Store.
func (s *instrumentedStore) Load(ctx context.Context, key string) (*storage.Record, error) {
	start := time.Now()
	rec, err := s.Store.Load(ctx, key)
	s.done(opLoad, start, err)
	return rec, err
}

// Merge implements storage.Store.
func (s *instrumentedStore) Merge(ctx context.Context, key string, patch map[string]json.RawMessage, opts storage.MergeOptions) (*storage.Record, error) {
	start := time.Now()
	rec, err := s.Store.Merge(ctx, key, patch, opts)
	s.done(opMerge, start, err)
	return rec, err
}

// Touch implements storage.Store.
func (s *instrumentedStore) Touch(ctx context.Context, key string, expires time.Time) error {
	start := time.Now()
	err := s.Store.Touch(ctx, key, expires)
	s.done(opTouch, start, err)
	return err
}

// Delete implements storage.Store.
func (s *instrumentedStore) Delete(ctx context.Context, key string) error {
	start := time.Now()
	err := s.Store.Delete(ctx, key)
	s.done(opDelete, start, err)
	return err
}

// Confirm implements storage.Confirmer: the store's own Confirm, or a
// Touch for a store that keeps no New state.
func (s *instrumentedStore) Confirm(ctx context.Context, key string, expires time.Time) error {
	start := time.Now()
	var err error
	if c, ok := s.Store.(storage.Confirmer); ok {
		err = c.Confirm(ctx, key, expires)
	} else {
		err = s.Store.Touch(ctx, key, expires)
	}
	s.done(opConfirm, start, err)
	return err
}

// DeleteVersion implements storage.VersionedDeleter: the store's own, or,
// for a third-party store without it, a Load, a comparison and a Delete
// (not atomic: a write between them may be lost with the session; the
// README says so).
func (s *instrumentedStore) DeleteVersion(ctx context.Context, key string, version uint64) error {
	start := time.Now()
	var err error
	if d, ok := s.Store.(storage.VersionedDeleter); ok {
		err = d.DeleteVersion(ctx, key, version)
	} else {
		var rec *storage.Record
		if rec, err = s.Store.Load(ctx, key); err == nil {
			if rec.Version != version {
				err = &storage.VersionError{Current: rec}
			} else {
				err = s.Store.Delete(ctx, key)
			}
		}
	}
	s.done(opDelete, start, err)
	return err
}

// Rotate implements storage.Store.
func (s *instrumentedStore) Rotate(ctx context.Context, oldKey, newKey string) error {
	start := time.Now()
	err := s.Store.Rotate(ctx, oldKey, newKey)
	s.done(opRotate, start, err)
	return err
}

var (
	_ storage.Store        = (*instrumentedStore)(nil)
	_ prometheus.Collector = memoryPoolCollector{}
)
