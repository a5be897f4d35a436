// Command quickstart sends one chat completion through Tollgate with the
// official OpenAI Go SDK, as the README's quickstart does:
//
//	TOLLGATE_KEY=tg-... go run ./test/quickstart
//
// The SDK needs nothing Tollgate-specific: a base URL and a key.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
)

func main() {
	base := flag.String("base-url", "http://127.0.0.1:10000/v1/", "Tollgate's OpenAI-compatible base URL")
	model := flag.String("model", "gpt-4o-mini", "model to ask")
	prompt := flag.String("prompt", "Say hello to Tollgate.", "what to ask")
	flag.Parse()
	key := os.Getenv("TOLLGATE_KEY")
	if key == "" {
		fmt.Fprintln(os.Stderr, "set TOLLGATE_KEY to a key from `tollgatectl key create`")
		os.Exit(2)
	}
	client := openai.NewClient(option.WithBaseURL(*base), option.WithAPIKey(key))
	resp, err := client.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{
		Model:    *model,
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage(*prompt)},
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "request failed:", err)
		os.Exit(1)
	}
	fmt.Println(resp.Choices[0].Message.Content)
	fmt.Printf("usage: %d prompt + %d completion tokens\n", resp.Usage.PromptTokens, resp.Usage.CompletionTokens)
}
