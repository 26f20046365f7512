//! Criterion bench: what reading an LLM response's usage costs on the response
//! path (`budget::usage::UsageReader`): a typical 2 KiB JSON completion, and a
//! 200-event stream pushed an event at a time (Anthropic and OpenAI shapes).

#![expect(
    missing_docs,
    reason = "criterion_group! defines an undocumented pub fn"
)]
#![expect(
    clippy::unwrap_used,
    reason = "a failed setup stops the bench with its message"
)]

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::hint::black_box;
use tollgate::budget::usage::{cost_usd, Price, Prices, UsageReader};

/// An OpenAI chat completion of about 2 KiB.
fn json_body() -> Vec<u8> {
    let text = "The quick brown fox jumps over the lazy dog. ".repeat(36);
    format!(
        r#"{{"id":"chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT","object":"chat.completion","created":1741569952,"model":"gpt-4.1-2025-04-14","choices":[{{"index":0,"message":{{"role":"assistant","content":"{text}","refusal":null,"annotations":[]}},"logprobs":null,"finish_reason":"stop"}}],"usage":{{"prompt_tokens":1219,"completion_tokens":410,"total_tokens":1629,"prompt_tokens_details":{{"cached_tokens":1024,"audio_tokens":0}},"completion_tokens_details":{{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}}}},"service_tier":"default","system_fingerprint":"fp_b705f0c291"}}"#
    )
    .into_bytes()
}

/// An Anthropic stream of 200 events: start, 196 text deltas, delta, stop.
fn anthropic_events() -> Vec<Vec<u8>> {
    let mut events = vec![b"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY\",\"type\":\"message\",\"role\":\"assistant\",\"content\":[],\"model\":\"claude-sonnet-4-5-20250929\",\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":1219,\"output_tokens\":1}}}\n\n".to_vec()];
    for i in 0..196 {
        events.push(format!("event: content_block_delta\ndata: {{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{{\"type\":\"text_delta\",\"text\":\"word{i} \"}}}}\n\n").into_bytes());
    }
    events.push(b"event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":410}}\n\n".to_vec());
    events.push(b"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n".to_vec());
    events
}

/// An OpenAI chat stream of 200 events: 198 chunks, the usage chunk, `[DONE]`.
fn openai_events() -> Vec<Vec<u8>> {
    let mut events = Vec::new();
    for i in 0..198 {
        events.push(format!("data: {{\"id\":\"chatcmpl-123\",\"object\":\"chat.completion.chunk\",\"created\":1694268190,\"model\":\"gpt-4.1-2025-04-14\",\"system_fingerprint\":\"fp_44709d6fcb\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"word{i} \"}},\"logprobs\":null,\"finish_reason\":null}}],\"usage\":null}}\n\n").into_bytes());
    }
    events.push(b"data: {\"id\":\"chatcmpl-123\",\"object\":\"chat.completion.chunk\",\"created\":1694268190,\"model\":\"gpt-4.1-2025-04-14\",\"system_fingerprint\":\"fp_44709d6fcb\",\"choices\":[],\"usage\":{\"prompt_tokens\":1219,\"completion_tokens\":410,\"total_tokens\":1629}}\n\n".to_vec());
    events.push(b"data: [DONE]\n\n".to_vec());
    events
}

fn budget(c: &mut Criterion) {
    let mut prices = Prices::new();
    prices.insert("gpt-4.1", Price::new(2.0, 8.0).unwrap());

    let body = json_body();
    let mut group = c.benchmark_group("llm_usage");
    group.throughput(Throughput::Bytes(body.len() as u64));
    group.bench_function(format!("json_{}_bytes", body.len()), |b| {
        b.iter(|| {
            let mut reader = UsageReader::new(Some("application/json"));
            reader.push(black_box(&body));
            let usage = reader.finish().unwrap();
            black_box(cost_usd(&usage, &prices))
        });
    });
    for (name, events) in [
        ("sse_anthropic_200_events", anthropic_events()),
        ("sse_openai_200_events", openai_events()),
    ] {
        let bytes: usize = events.iter().map(Vec::len).sum();
        group.throughput(Throughput::Bytes(bytes as u64));
        group.bench_function(name, |b| {
            b.iter(|| {
                let mut reader = UsageReader::new(Some("text/event-stream"));
                for event in &events {
                    reader.push(black_box(event));
                }
                black_box(reader.finish().unwrap())
            });
        });
    }
    group.finish();
}

criterion_group!(benches, budget);
criterion_main!(benches);
