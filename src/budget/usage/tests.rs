use super::*;
use proptest::prelude::*;

const JSON: Option<&str> = Some("application/json");
const SSE: Option<&str> = Some("text/event-stream; charset=utf-8");

/// The providers' own examples (their API references), with what they report.
fn examples() -> Vec<(&'static str, Option<&'static str>, &'static [u8], Usage)> {
    let usage = |model: &str, input, output| Usage {
        model: Some(model.to_string()),
        input_tokens: input,
        output_tokens: output,
    };
    vec![
        (
            "openai chat",
            JSON,
            include_bytes!("testdata/openai_chat.json"),
            usage("gpt-4.1-2025-04-14", 19, 10),
        ),
        (
            "openai chat stream",
            SSE,
            include_bytes!("testdata/openai_chat.sse"),
            usage("gpt-4o-mini", 9, 12),
        ),
        (
            "openai responses",
            JSON,
            include_bytes!("testdata/openai_responses.json"),
            usage("gpt-4.1-2025-04-14", 36, 87),
        ),
        (
            "openai responses stream",
            SSE,
            include_bytes!("testdata/openai_responses.sse"),
            usage("gpt-4.1-2025-04-14", 37, 11),
        ),
        (
            "anthropic",
            JSON,
            include_bytes!("testdata/anthropic.json"),
            usage("claude-sonnet-4-5-20250929", 2095 + 2051, 503),
        ),
        (
            "anthropic stream",
            SSE,
            include_bytes!("testdata/anthropic.sse"),
            usage("claude-opus-4-6", 25, 15),
        ),
        (
            "gemini",
            JSON,
            include_bytes!("testdata/gemini.json"),
            usage("gemini-2.5-flash", 8, 12 + 633),
        ),
        (
            "gemini stream",
            SSE,
            include_bytes!("testdata/gemini.sse"),
            usage("gemini-2.0-flash", 10, 11),
        ),
    ]
}

fn read_in_pieces(content_type: Option<&str>, pieces: &[&[u8]]) -> Result<Usage, Missing> {
    let mut reader = UsageReader::new(content_type);
    for piece in pieces {
        reader.push(piece);
    }
    reader.finish()
}

#[test]
fn every_example_reads_as_its_provider_counts() {
    for (name, content_type, body, expected) in examples() {
        assert_eq!(
            UsageReader::read(content_type, body).as_ref(),
            Ok(&expected),
            "{name}"
        );
        // Without a Content-Type the body's shape decides.
        assert_eq!(
            UsageReader::read(None, body).as_ref(),
            Ok(&expected),
            "{name}"
        );
    }
}

#[test]
fn every_split_of_every_example_reads_the_same() {
    for (name, content_type, body, expected) in examples() {
        for at in 0..=body.len() {
            let (a, b) = body.split_at(at);
            assert_eq!(
                read_in_pieces(content_type, &[a, b]).as_ref(),
                Ok(&expected),
                "{name} split at {at}"
            );
        }
        let bytes: Vec<&[u8]> = body.chunks(1).collect();
        assert_eq!(
            read_in_pieces(content_type, &bytes).as_ref(),
            Ok(&expected),
            "{name} byte by byte"
        );
    }
}

#[test]
fn gemini_json_array_of_chunks_takes_the_last_counts() {
    let body = br#"[{"candidates":[],"usageMetadata":{"promptTokenCount":10,"totalTokenCount":10},"modelVersion":"gemini-2.0-flash"},
                    {"candidates":[],"usageMetadata":{"promptTokenCount":10,"candidatesTokenCount":11,"totalTokenCount":21},"modelVersion":"gemini-2.0-flash"}]"#;
    let usage = UsageReader::read(JSON, body).unwrap();
    assert_eq!((usage.input_tokens, usage.output_tokens), (10, 11));
}

#[test]
fn gemini_counts_tool_use_prompt_as_input_and_the_rest_of_the_total_as_output() {
    let body = br#"{"usageMetadata":{"promptTokenCount":100,"toolUsePromptTokenCount":20,"candidatesTokenCount":5,"thoughtsTokenCount":7,"cachedContentTokenCount":50,"totalTokenCount":140}}"#;
    let usage = UsageReader::read(JSON, body).unwrap();
    assert_eq!(usage.model, None);
    assert_eq!((usage.input_tokens, usage.output_tokens), (120, 20));
}

#[test]
fn anthropic_message_delta_counts_replace_the_start_counts() {
    // Newer streams repeat the cumulative input and cache counts in message_delta.
    let body = b"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"model\":\"claude-x\",\"usage\":{\"input_tokens\":5,\"cache_read_input_tokens\":100,\"output_tokens\":1}}}\n\n\
event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{},\"usage\":{\"output_tokens\":30}}\n\n\
event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{},\"usage\":{\"input_tokens\":6,\"cache_read_input_tokens\":null,\"output_tokens\":40}}\n\n";
    let usage = UsageReader::read(SSE, body).unwrap();
    assert_eq!(usage.model.as_deref(), Some("claude-x"));
    assert_eq!((usage.input_tokens, usage.output_tokens), (106, 40));
}

#[test]
fn a_stream_without_usage_is_missing() {
    // An OpenAI chat stream without stream_options.include_usage.
    let body = b"data: {\"model\":\"gpt-4o\",\"choices\":[{\"delta\":{\"content\":\"Hi\"}}]}\n\ndata: [DONE]\n\n";
    assert_eq!(UsageReader::read(SSE, body), Err(Missing::NoUsage));
    let with_null = b"data: {\"model\":\"gpt-4o\",\"choices\":[],\"usage\":null}\n\n";
    assert_eq!(UsageReader::read(SSE, with_null), Err(Missing::NoUsage));
    assert_eq!(UsageReader::read(SSE, b""), Err(Missing::NoUsage));
    assert_eq!(UsageReader::read(None, b""), Err(Missing::NoUsage));
    assert_eq!(UsageReader::read(None, b"  \n"), Err(Missing::NoUsage));
}

#[test]
fn a_truncated_stream_reports_what_arrived() {
    let body: &[u8] = include_bytes!("testdata/anthropic.sse");
    let cut = body.len() / 2;
    let usage = UsageReader::read(SSE, &body[..cut]).unwrap();
    // message_start arrived, message_delta did not.
    assert_eq!((usage.input_tokens, usage.output_tokens), (25, 1));
    // Cut inside the only usage event: nothing.
    let body: &[u8] = include_bytes!("testdata/openai_responses.sse");
    let at = body.len() - 40;
    assert_eq!(UsageReader::read(SSE, &body[..at]), Err(Missing::NoUsage));
}

#[test]
fn a_last_event_without_its_blank_line_still_counts() {
    let body = b"data: {\"model\":\"m\",\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":4}}\n";
    let usage = UsageReader::read(SSE, body).unwrap();
    assert_eq!((usage.input_tokens, usage.output_tokens), (3, 4));
    // A partial last line does not.
    let partial = &body[..body.len() - 1];
    assert_eq!(UsageReader::read(SSE, partial), Err(Missing::NoUsage));
}

#[test]
fn sse_framing_follows_the_spec() {
    // CR, LF and CRLF line ends; multi-line data; `data` without a space;
    // comments and other fields skipped.
    let body = b": keep-alive\r\rid: 7\rdata:{\"usage\":\r\ndata: {\"input_tokens\":1,\n\
data: \"output_tokens\":2}}\nretry: 10\n\n";
    let usage = UsageReader::read(SSE, body).unwrap();
    assert_eq!((usage.input_tokens, usage.output_tokens), (1, 2));
}

#[test]
fn a_truncated_json_body_is_not_json() {
    let body: &[u8] = include_bytes!("testdata/openai_chat.json");
    let got = UsageReader::read(JSON, &body[..body.len() - 3]).map_err(|e| e.to_string());
    assert_eq!(
        got,
        Err("usage: missing (the body is not complete JSON, at line 34 column 27)".to_string())
    );
}

#[test]
fn errors_do_not_quote_the_body() {
    let secret = "sk-".to_string() + &"x".repeat(10_000);
    for body in [
        format!("\"{secret}\""),
        format!("{{\"usage\":{{}}}} {secret}"),
        format!("{{\"{secret}\": nope}}"),
    ] {
        let got = UsageReader::read(JSON, body.as_bytes())
            .unwrap_err()
            .to_string();
        assert!(got.len() < 120 && !got.contains("xxx"), "{got}");
    }
}

#[test]
fn bad_counts_are_malformed_not_zero() {
    for count in [
        "-1",
        "1.5",
        "1e3",
        "18446744073709551616",
        "\"12\"",
        "true",
        "[1]",
        "{}",
    ] {
        let body = format!(r#"{{"usage":{{"prompt_tokens":{count},"completion_tokens":1}}}}"#);
        let got = UsageReader::read(JSON, body.as_bytes());
        assert!(
            matches!(got, Err(Missing::Malformed(_))),
            "{count}: {got:?}"
        );
    }
    let max = format!(
        r#"{{"usage":{{"input_tokens":{m},"cache_read_input_tokens":{m},"output_tokens":{m}}}}}"#,
        m = u64::MAX
    );
    let usage = UsageReader::read(JSON, max.as_bytes()).unwrap();
    assert_eq!(usage.input_tokens, u64::MAX, "saturates");
    assert_eq!(usage.total_tokens(), u64::MAX);
}

#[test]
fn non_objects_are_handled() {
    for body in [
        &b"[]"[..],
        b"null",
        b"42",
        b"\"usage\"",
        b"[1,2]",
        b"{\"usage\":[19,10]}",
        b"{\"usage\":\"19\"}",
        b"{\"message\":\"overloaded\",\"usage\":null}",
        b"{\"model\":{\"a\":1},\"usage\":{\"prompt_tokens\":1}}",
    ] {
        let got = UsageReader::read(JSON, body);
        let text = String::from_utf8_lossy(body);
        match got {
            Ok(u) => assert_eq!(
                (u.model, u.input_tokens),
                (None, 1),
                "{text} reads as usage"
            ),
            Err(e) => assert!(!e.to_string().is_empty(), "{text}"),
        }
    }
    assert!(matches!(
        UsageReader::read(JSON, b"{\"usage\":[19,10]}"),
        Err(Missing::Malformed(_))
    ));
    // An OpenAI error event, whose `message` is a string, is skipped in a stream.
    let body = b"data: {\"type\":\"error\",\"message\":\"overloaded\"}\n\ndata: {\"usage\":{\"input_tokens\":1,\"output_tokens\":1}}\n\n";
    assert!(UsageReader::read(SSE, body).is_ok());
}

#[test]
fn deep_nesting_is_refused_without_overflowing_the_stack() {
    for open in [&b"["[..], b"{\"a\":"] {
        let mut body = b"{\"x\":".to_vec();
        for _ in 0..100_000 {
            body.extend_from_slice(open);
        }
        assert!(UsageReader::read(JSON, &body).is_err());
        let mut event = b"data: {\"usage\":".to_vec();
        event.extend_from_slice(&body);
        event.extend_from_slice(b"\n\n");
        assert_eq!(UsageReader::read(SSE, &event), Err(Missing::NoUsage));
    }
}

#[test]
fn a_json_body_over_the_limit_gives_up() {
    let mut reader = UsageReader::new(JSON);
    reader.push(b"{\"pad\":\"");
    let chunk = vec![b'a'; 64 << 10];
    for _ in 0..(MAX_JSON / chunk.len() + 1) {
        reader.push(&chunk);
    }
    reader.push(b"\",\"usage\":{\"prompt_tokens\":1}}");
    let got = reader.finish();
    assert_eq!(got, Err(Missing::TooLarge { limit: MAX_JSON }));
    assert_eq!(
        got.map_err(|e| e.to_string()),
        Err("usage: missing (the JSON body is larger than 4194304 bytes)".to_string())
    );
}

#[test]
fn an_event_over_the_limit_is_skipped_and_memory_stays_bounded() {
    let mut reader = UsageReader::new(SSE);
    reader.push(b"data: {\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":1},\"pad\":\"");
    let chunk = vec![b'a'; 64 << 10];
    // An event that never ends: 8 MiB without a line break.
    for _ in 0..128 {
        reader.push(&chunk);
        if let State::Sse(framer, _) = &reader.state {
            assert!(framer.kept() <= MAX_EVENT);
        }
    }
    reader.push(b"\"}\n\n");
    reader.push(b"data: {\"usage\":{\"prompt_tokens\":2,\"completion_tokens\":3}}\n\n");
    let usage = reader.finish().unwrap();
    assert_eq!((usage.input_tokens, usage.output_tokens), (2, 3));
}

#[test]
fn an_event_of_many_lines_over_the_limit_is_skipped() {
    let mut reader = UsageReader::new(SSE);
    let line = format!("data: {}\n", "b".repeat(1000));
    for _ in 0..(MAX_EVENT / 1000 + 10) {
        reader.push(line.as_bytes());
    }
    reader.push(b"\ndata: {\"usage\":{\"input_tokens\":2,\"output_tokens\":3}}\n\n");
    assert!(reader.finish().is_ok());
}

#[test]
fn a_hundred_thousand_events_take_the_last_usage() {
    let mut reader = UsageReader::new(SSE);
    for i in 0..100_000u64 {
        let event = format!(
            "event: message_delta\ndata: {{\"type\":\"message_delta\",\"usage\":{{\"output_tokens\":{i}}}}}\n\n"
        );
        reader.push(event.as_bytes());
    }
    let usage = reader.finish().unwrap();
    assert_eq!(usage.output_tokens, 99_999);
}

#[test]
fn the_content_type_decides_before_the_shape() {
    let sse = b"data: {\"usage\":{\"input_tokens\":1,\"output_tokens\":2}}\n\n";
    assert!(matches!(
        UsageReader::read(JSON, sse),
        Err(Missing::NotJson { .. })
    ));
    assert!(UsageReader::read(Some("text/plain"), sse).is_ok());
    assert!(UsageReader::read(Some("TEXT/Event-Stream"), sse).is_ok());
    let json = br#"{"usage":{"input_tokens":1,"output_tokens":2}}"#;
    assert!(UsageReader::read(Some("application/vnd.api+json"), json).is_ok());
}

#[test]
fn prices_match_exact_then_the_longest_dashed_prefix() {
    let mut prices = Prices::new();
    prices.insert("gpt-4.1", Price::new(2.0, 8.0).unwrap());
    prices.insert("gpt-4.1-mini", Price::new(0.4, 1.6).unwrap());
    prices.insert("claude-sonnet-4-5", Price::new(3.0, 15.0).unwrap());
    let cost = |model: Option<&str>, input, output| {
        cost_usd(
            &Usage {
                model: model.map(str::to_string),
                input_tokens: input,
                output_tokens: output,
            },
            &prices,
        )
    };
    let close = |got: Option<f64>, want: f64| got.is_some_and(|g| (g - want).abs() < 1e-9);
    assert!(close(cost(Some("gpt-4.1"), 1_000_000, 0), 2.0));
    assert!(close(
        cost(Some("gpt-4.1-2025-04-14"), 500_000, 250_000),
        3.0
    ));
    assert!(close(
        cost(Some("gpt-4.1-mini-2025-04-14"), 1_000_000, 1_000_000),
        2.0
    ));
    assert!(close(
        cost(Some("claude-sonnet-4-5-20250929"), 2000, 100),
        0.0075
    ));
    assert_eq!(cost(Some("gpt-4.10"), 1, 1), None);
    assert_eq!(cost(Some("gpt-4"), 1, 1), None);
    assert_eq!(cost(Some("GPT-4.1"), 1, 1), None);
    assert_eq!(cost(None, 1, 1), None);
    assert_eq!(Price::new(-1.0, 1.0), Err(BadPrice));
    assert_eq!(Price::new(1.0, f64::NAN), Err(BadPrice));
    assert_eq!(Price::new(f64::INFINITY, 1.0), Err(BadPrice));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Any cuts of any example read as the whole body does.
    #[test]
    fn any_cuts_read_the_same(which in 0usize..8, cuts in proptest::collection::vec(any::<proptest::sample::Index>(), 0..12), sniff in any::<bool>()) {
        let (_, content_type, body, expected) = examples().swap_remove(which);
        let content_type = if sniff { None } else { content_type };
        let mut at: Vec<usize> = cuts.iter().map(|i| i.index(body.len() + 1)).collect();
        at.sort_unstable();
        let mut pieces = Vec::new();
        let mut from = 0;
        for to in at {
            pieces.push(&body[from..to]);
            from = to;
        }
        pieces.push(&body[from..]);
        prop_assert_eq!(read_in_pieces(content_type, &pieces), Ok(expected));
    }

    /// Arbitrary bytes, whole or cut anywhere: no panic, and the same outcome.
    #[test]
    fn arbitrary_bytes_read_the_same_however_cut(body in proptest::collection::vec(any::<u8>(), 0..400), at in any::<proptest::sample::Index>(), ct in 0usize..3) {
        let content_type = [None, JSON, SSE][ct];
        let at = at.index(body.len() + 1);
        let whole = UsageReader::read(content_type, &body);
        prop_assert_eq!(read_in_pieces(content_type, &[&body[..at], &body[at..]]), whole);
    }
}
