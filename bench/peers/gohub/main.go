// gohub: the seed's SSE hub design, in Go, as a comparison peer for the ssehub
// benchmarks (bench/compare.sh). Standard library only.
//
// Design (as the seed had it): one hub singleton holding the clients, indexed
// by client id and by user id; a buffered channel per client; the stream
// handler goroutine of each client JSON-encodes every message it writes
// (encoding per client write, not once per message); a 30 s ping ticker per
// stream. HS256 JWTs are checked with crypto/hmac. Same API paths and wire
// format as ssehub:
//
//	GET  /sse/stream?token=...   (or Authorization: Bearer, or cookie token)
//	GET  /api/sse/health
//	GET  /api/sse/stats          admin
//	POST /api/sse/broadcast      admin {"event","data","id"?,"retry"?}
//	POST /api/sse/send-to-user   admin {"user_id","event","data",...}
//
// It runs behind nginx (proxy_pass, proxy_buffering off) on a unix socket or
// a TCP address: gohub -listen unix:/path/gohub.sock -secret-file FILE
package main

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

const (
	clientBuffer   = 256   // messages queued per client before it counts as slow
	maxBodyBytes   = 65536 // request body limit
	maxTokenBytes  = 8192  // token length cap
	jwtLeewaySecs  = 30    // clock skew allowed on exp / nbf
	retryMillis    = 3000  // "retry:" sent at the start of a stream
	maxEventLength = 64
)

var pingInterval = 30 * time.Second

// Message is what a publisher sent; Data stays a decoded JSON value and is
// encoded again by every client that writes it (the seed's cost model).
type Message struct {
	ID    string
	Event string
	Retry int
	Data  interface{}
}

// Client is one open stream.
type Client struct {
	ID     string
	UserID string
	ch     chan *Message
}

// Hub is the singleton registry.
type Hub struct {
	mu      sync.RWMutex
	clients map[string]*Client              // client id -> client
	byUser  map[string]map[*Client]struct{} // user id -> its clients
	dropped uint64                          // messages not queued: client buffer full
	seq     uint64
	boot    int64
}

var hub = &Hub{
	clients: make(map[string]*Client),
	byUser:  make(map[string]map[*Client]struct{}),
	boot:    time.Now().Unix(),
}

func (h *Hub) register(c *Client) {
	h.mu.Lock()
	h.clients[c.ID] = c
	set := h.byUser[c.UserID]
	if set == nil {
		set = make(map[*Client]struct{})
		h.byUser[c.UserID] = set
	}
	set[c] = struct{}{}
	h.mu.Unlock()
}

func (h *Hub) unregister(c *Client) {
	h.mu.Lock()
	delete(h.clients, c.ID)
	if set := h.byUser[c.UserID]; set != nil {
		delete(set, c)
		if len(set) == 0 {
			delete(h.byUser, c.UserID)
		}
	}
	h.mu.Unlock()
}

func (h *Hub) deliver(c *Client, m *Message) bool {
	select {
	case c.ch <- m:
		return true
	default:
		atomic.AddUint64(&h.dropped, 1)
		return false
	}
}

func (h *Hub) broadcast(m *Message) int {
	n := 0
	h.mu.RLock()
	for _, c := range h.clients {
		if h.deliver(c, m) {
			n++
		}
	}
	h.mu.RUnlock()
	return n
}

func (h *Hub) sendToUser(user string, m *Message) int {
	n := 0
	h.mu.RLock()
	for c := range h.byUser[user] {
		if h.deliver(c, m) {
			n++
		}
	}
	h.mu.RUnlock()
	return n
}

func (h *Hub) nextID() string {
	return fmt.Sprintf("%d-%d", h.boot, atomic.AddUint64(&h.seq, 1))
}

// ---- JWT (HS256) ----

var secret []byte

type claims struct {
	User  string
	Admin bool
}

func b64(s string) ([]byte, error) { return base64.RawURLEncoding.DecodeString(s) }

func verifyJWT(tok string) (*claims, string) {
	if len(tok) > maxTokenBytes {
		return nil, "invalid_token"
	}
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return nil, "invalid_token"
	}
	hb, err := b64(parts[0])
	if err != nil {
		return nil, "invalid_token"
	}
	var hdr struct {
		Alg string `json:"alg"`
	}
	if json.Unmarshal(hb, &hdr) != nil {
		return nil, "invalid_token"
	}
	if hdr.Alg != "HS256" {
		return nil, "wrong_algorithm"
	}
	sig, err := b64(parts[2])
	if err != nil {
		return nil, "invalid_token"
	}
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(parts[0] + "." + parts[1]))
	if !hmac.Equal(sig, mac.Sum(nil)) {
		return nil, "invalid_token"
	}
	pb, err := b64(parts[1])
	if err != nil {
		return nil, "invalid_token"
	}
	var p map[string]interface{}
	dec := json.NewDecoder(bytes.NewReader(pb))
	dec.UseNumber()
	if dec.Decode(&p) != nil {
		return nil, "invalid_token"
	}
	now := time.Now().Unix()
	if v, ok := p["exp"].(json.Number); ok {
		if exp, err := v.Int64(); err != nil || now > exp+jwtLeewaySecs {
			return nil, "token_expired"
		}
	}
	if v, ok := p["nbf"].(json.Number); ok {
		if nbf, err := v.Int64(); err != nil || now+jwtLeewaySecs < nbf {
			return nil, "token_not_yet_valid"
		}
	}
	c := &claims{}
	uid := p["user_id"]
	if uid == nil {
		uid = p["sub"]
	}
	switch v := uid.(type) {
	case string:
		c.User = v
	case json.Number:
		c.User = v.String()
	}
	if c.User == "" {
		return nil, "missing_user"
	}
	c.Admin = p["role"] == "admin"
	return c, ""
}

func tokenOf(r *http.Request) string {
	if a := r.Header.Get("Authorization"); strings.HasPrefix(a, "Bearer ") {
		return strings.TrimSpace(a[7:])
	}
	if ck, err := r.Cookie("token"); err == nil && ck.Value != "" {
		return ck.Value
	}
	return r.URL.Query().Get("token")
}

// ---- HTTP ----

func writeJSON(w http.ResponseWriter, status int, v interface{}) {
	b, _ := json.Marshal(v)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	w.Write(b)
}

func fail(w http.ResponseWriter, status int, code, msg string) {
	if status == http.StatusUnauthorized {
		if code == "missing_token" {
			w.Header().Set("WWW-Authenticate", "Bearer")
		} else {
			w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		}
	}
	writeJSON(w, status, map[string]interface{}{"success": false,
		"error": map[string]string{"code": code, "message": msg}})
}

func ok(w http.ResponseWriter, data interface{}) {
	writeJSON(w, http.StatusOK, map[string]interface{}{"success": true, "data": data})
}

func authenticate(w http.ResponseWriter, r *http.Request, admin bool) *claims {
	tok := tokenOf(r)
	if tok == "" {
		fail(w, http.StatusUnauthorized, "missing_token", "no token")
		return nil
	}
	c, code := verifyJWT(tok)
	if c == nil {
		fail(w, http.StatusUnauthorized, code, "token rejected")
		return nil
	}
	if admin && !c.Admin {
		fail(w, http.StatusForbidden, "forbidden", "admin only")
		return nil
	}
	return c
}

func newClientID() string {
	var b [16]byte
	rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

func handleStream(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", "GET")
		fail(w, http.StatusMethodNotAllowed, "method_not_allowed", "GET only")
		return
	}
	cl := authenticate(w, r, false)
	if cl == nil {
		return
	}
	flusher, canFlush := w.(http.Flusher)
	if !canFlush {
		fail(w, http.StatusInternalServerError, "internal", "no streaming")
		return
	}
	c := &Client{ID: newClientID(), UserID: cl.User, ch: make(chan *Message, clientBuffer)}
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	hub.register(c)
	defer hub.unregister(c)

	connected, _ := json.Marshal(map[string]interface{}{
		"client_id": c.ID, "timestamp": time.Now().Unix()})
	if _, err := fmt.Fprintf(w, "retry: %d\n\nevent: connected\ndata: %s\n\n",
		retryMillis, connected); err != nil {
		return
	}
	flusher.Flush()

	ticker := time.NewTicker(pingInterval)
	defer ticker.Stop()
	done := r.Context().Done()
	for {
		select {
		case <-done:
			return
		case m := <-c.ch:
			data, err := json.Marshal(m.Data) // encoded per client write
			if err != nil {
				continue
			}
			var err2 error
			if m.Retry > 0 {
				_, err2 = fmt.Fprintf(w, "id: %s\nevent: %s\nretry: %d\ndata: %s\n\n",
					m.ID, m.Event, m.Retry, data)
			} else {
				_, err2 = fmt.Fprintf(w, "id: %s\nevent: %s\ndata: %s\n\n", m.ID, m.Event, data)
			}
			if err2 != nil {
				return
			}
			flusher.Flush()
		case <-ticker.C:
			if _, err := fmt.Fprintf(w, "event: ping\ndata: {\"timestamp\":%d}\n\n",
				time.Now().Unix()); err != nil {
				return
			}
			flusher.Flush()
		}
	}
}

type publishReq struct {
	UserID interface{} `json:"user_id"`
	Event  string      `json:"event"`
	Data   interface{} `json:"data"`
	ID     string      `json:"id"`
	Retry  int         `json:"retry"`
}

func readPublish(w http.ResponseWriter, r *http.Request) *publishReq {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		fail(w, http.StatusMethodNotAllowed, "method_not_allowed", "POST only")
		return nil
	}
	if authenticate(w, r, true) == nil {
		return nil
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBodyBytes+1))
	if err != nil {
		fail(w, http.StatusBadRequest, "invalid_json", "unreadable body")
		return nil
	}
	if len(body) > maxBodyBytes {
		fail(w, http.StatusRequestEntityTooLarge, "payload_too_large", "body too large")
		return nil
	}
	var p publishReq
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(&p); err != nil || dec.More() {
		fail(w, http.StatusBadRequest, "invalid_json", "malformed JSON")
		return nil
	}
	if p.Event == "" || len(p.Event) > maxEventLength || strings.ContainsAny(p.Event, "\r\n\x00") ||
		strings.ContainsAny(p.ID, "\r\n\x00") || len(p.ID) > 128 || p.Data == nil {
		fail(w, http.StatusBadRequest, "invalid_field", "bad event, id or data")
		return nil
	}
	return &p
}

func (p *publishReq) message() *Message {
	id := p.ID
	if id == "" {
		id = hub.nextID()
	}
	return &Message{ID: id, Event: p.Event, Retry: p.Retry, Data: p.Data}
}

func handleBroadcast(w http.ResponseWriter, r *http.Request) {
	p := readPublish(w, r)
	if p == nil {
		return
	}
	m := p.message()
	n := hub.broadcast(m)
	ok(w, map[string]interface{}{"id": m.ID, "recipients": n})
}

func handleSendToUser(w http.ResponseWriter, r *http.Request) {
	p := readPublish(w, r)
	if p == nil {
		return
	}
	var user string
	switch v := p.UserID.(type) {
	case string:
		user = v
	case json.Number:
		user = v.String()
	}
	if user == "" {
		fail(w, http.StatusBadRequest, "invalid_field", "user_id missing")
		return
	}
	m := p.message()
	n := hub.sendToUser(user, m)
	ok(w, map[string]interface{}{"id": m.ID, "recipients": n})
}

func handleStats(w http.ResponseWriter, r *http.Request) {
	if authenticate(w, r, true) == nil {
		return
	}
	hub.mu.RLock()
	users := make(map[string]int, len(hub.byUser))
	for u, set := range hub.byUser {
		users[u] = len(set)
	}
	total := len(hub.clients)
	hub.mu.RUnlock()
	ok(w, map[string]interface{}{"total_clients": total, "user_clients": users,
		"dropped": atomic.LoadUint64(&hub.dropped)})
}

func main() {
	listen := flag.String("listen", "unix:/tmp/gohub.sock", "unix:/path or host:port")
	secretFile := flag.String("secret-file", "", "HS256 secret (file bytes, one trailing newline ignored)")
	ping := flag.Int("ping-interval", 30, "seconds between pings")
	flag.Parse()
	pingInterval = time.Duration(*ping) * time.Second
	b, err := os.ReadFile(*secretFile)
	if err != nil {
		log.Fatalf("gohub: secret: %v", err)
	}
	secret = bytes.TrimSuffix(b, []byte("\n"))

	mux := http.NewServeMux()
	mux.HandleFunc("/sse/stream", handleStream)
	mux.HandleFunc("/api/sse/health", func(w http.ResponseWriter, r *http.Request) {
		ok(w, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("/api/sse/stats", handleStats)
	mux.HandleFunc("/api/sse/broadcast", handleBroadcast)
	mux.HandleFunc("/api/sse/send-to-user", handleSendToUser)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fail(w, http.StatusNotFound, "not_found", "no such route")
	})

	var ln net.Listener
	if strings.HasPrefix(*listen, "unix:") {
		path := strings.TrimPrefix(*listen, "unix:")
		os.Remove(path)
		ln, err = net.Listen("unix", path)
		if err == nil {
			os.Chmod(path, 0666)
		}
	} else {
		ln, err = net.Listen("tcp", *listen)
	}
	if err != nil {
		log.Fatalf("gohub: listen: %v", err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-sig
		srv.Close() // ends every stream
	}()
	if err := srv.Serve(ln); err != nil && err != http.ErrServerClosed {
		log.Fatalf("gohub: %v", err)
	}
}
