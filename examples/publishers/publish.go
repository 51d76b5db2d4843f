// Publish to ssehub from Go, standard library only (net/http).
//
//	SSEHUB_URL=https://sse.example.com SSEHUB_TOKEN=<admin JWT> \
//	  go run publish.go send-to-user '{"user_id":42,"event":"notification","data":{"n":1}}'
//
// Copy Publish into your code. It returns the answer's "data" ({"id",
// "recipients"} for a publish), an *Error with ssehub's error code and
// message for an error answer, and retries what may pass a moment later:
// 503 (waiting its Retry-After), 502/504 from the front server while ssehub
// restarts, and network errors.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

const (
	attempts = 5                // 0.5 + 1 + 2 + 4 s of waiting at most, without Retry-After
	maxWait  = 30 * time.Second // cap on a server's Retry-After
)

// Error is an answer other than 2xx, or a network error (Status 0).
type Error struct {
	Status  int
	Code    string
	Message string
}

func (e *Error) Error() string { return fmt.Sprintf("HTTP %d %s: %s", e.Status, e.Code, e.Message) }

var client = &http.Client{Timeout: 10 * time.Second}

// Publish POSTs body (JSON) to baseURL/api/sse/route (broadcast,
// send-to-user, send-to-client, disconnect) and returns the answer's data.
func Publish(ctx context.Context, baseURL, token, route string, body []byte) (json.RawMessage, error) {
	url := strings.TrimRight(baseURL, "/") + "/api/sse/" + route
	for attempt := 1; ; attempt++ {
		wait := time.Duration(500<<(attempt-1)) * time.Millisecond
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
		if err != nil {
			return nil, err
		}
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/json")
		res, err := client.Do(req)
		if err != nil {
			if attempt == attempts || ctx.Err() != nil {
				return nil, &Error{Status: 0, Code: "network", Message: err.Error()}
			}
		} else {
			text, _ := io.ReadAll(io.LimitReader(res.Body, 1<<20))
			res.Body.Close()
			var answer struct {
				Data  json.RawMessage `json:"data"`
				Error *struct {
					Code    string `json:"code"`
					Message string `json:"message"`
				} `json:"error"`
			}
			jsonErr := json.Unmarshal(text, &answer)
			if res.StatusCode >= 200 && res.StatusCode < 300 && jsonErr == nil {
				return answer.Data, nil
			}
			e := &Error{Status: res.StatusCode, Message: string(text)}
			if len(e.Message) > 200 {
				e.Message = e.Message[:200] // a front server's error page
			}
			if jsonErr == nil && answer.Error != nil {
				e.Code, e.Message = answer.Error.Code, answer.Error.Message
			}
			retryable := res.StatusCode == 502 || res.StatusCode == 503 || res.StatusCode == 504
			if !retryable || attempt == attempts {
				return nil, e
			}
			if s, err := strconv.Atoi(res.Header.Get("Retry-After")); err == nil && s >= 0 {
				wait = time.Duration(s) * time.Second
				if wait > maxWait {
					wait = maxWait
				}
			}
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(wait):
		}
	}
}

func main() {
	if len(os.Args) != 3 || !json.Valid([]byte(os.Args[2])) {
		fmt.Fprintln(os.Stderr, "usage: publish ROUTE JSON   (SSEHUB_URL, SSEHUB_TOKEN in the environment)")
		os.Exit(2)
	}
	baseURL := os.Getenv("SSEHUB_URL")
	if baseURL == "" {
		baseURL = "http://localhost"
	}
	data, err := Publish(context.Background(), baseURL, os.Getenv("SSEHUB_TOKEN"), os.Args[1], []byte(os.Args[2]))
	if err != nil {
		fmt.Fprintln(os.Stderr, "ssehub:", err)
		os.Exit(1)
	}
	fmt.Println(string(data))
}
