// Command warden-go-client is the Go client of Warden's end-to-end tests: one chat completion
// with nothing but Go's standard library (net/http, crypto/tls with the system trust store, or
// SSL_CERT_FILE when set), the way a Go agent talks to the OpenAI API.
//
// On success it prints one JSON line: its pid and executable (as the process sees them), the
// HTTP status, the model and the reply. When the request fails (e.g. an x509 error) it prints
// "error: ..." on stderr and exits 1; a non-200 answer exits 2.
package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"
)

const defaultURL = "https://api.openai.com/v1/chat/completions"

type chatResponse struct {
	Model   string `json:"model"`
	Choices []struct {
		Message struct {
			Content string `json:"content"`
		} `json:"message"`
	} `json:"choices"`
}

func main() {
	url := defaultURL
	if len(os.Args) > 1 {
		url = os.Args[1]
	}
	key := os.Getenv("OPENAI_API_KEY")
	if key == "" {
		key = "sk-test"
	}
	body, err := json.Marshal(map[string]any{
		"model":    "gpt-4o-mini",
		"messages": []map[string]string{{"role": "user", "content": "Say hello"}},
	})
	if err != nil {
		fail(err)
	}
	request, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		fail(err)
	}
	request.Header.Set("Authorization", "Bearer "+key)
	request.Header.Set("Content-Type", "application/json")

	client := &http.Client{Timeout: 20 * time.Second}
	response, err := client.Do(request)
	if err != nil {
		fail(err)
	}
	defer response.Body.Close()
	raw, err := io.ReadAll(response.Body)
	if err != nil {
		fail(err)
	}

	var chat chatResponse
	content := ""
	if json.Unmarshal(raw, &chat) == nil && len(chat.Choices) > 0 {
		content = chat.Choices[0].Message.Content
	}
	exe, _ := os.Readlink("/proc/self/exe")
	line, err := json.Marshal(map[string]any{
		"pid":     os.Getpid(),
		"exe":     exe,
		"status":  response.StatusCode,
		"proto":   response.Proto,
		"model":   chat.Model,
		"content": content,
	})
	if err != nil {
		fail(err)
	}
	fmt.Println(string(line))
	if response.StatusCode != http.StatusOK {
		fmt.Fprintf(os.Stderr, "error: HTTP %d: %s\n", response.StatusCode, raw)
		os.Exit(2)
	}
}

func fail(err error) {
	fmt.Fprintf(os.Stderr, "error: %v\n", err)
	os.Exit(1)
}
