use super::*;
use proptest::prelude::*;
use serde_json::Value;

fn allowed() -> Vec<String> {
    vec!["get_file".into()]
}

fn run_whole(input: &[u8]) -> Vec<u8> {
    let mut f = SseToolsFilter::new(allowed());
    let mut out = f.push(input);
    out.extend(f.finish());
    out
}

fn run_split(input: &[u8], cuts: &[usize]) -> Vec<u8> {
    let mut f = SseToolsFilter::new(allowed());
    let mut out = Vec::new();
    let mut start = 0;
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
    cuts.sort_unstable();
    for cut in cuts {
        out.extend(f.push(&input[start..cut.max(start)]));
        start = cut.max(start);
    }
    out.extend(f.push(&input[start..]));
    out.extend(f.finish());
    out
}

const TOOLS: &str =
    r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"get_file"},{"name":"delete_repo"}]}}"#;

fn data_of(out: &[u8]) -> Value {
    let text = std::str::from_utf8(out).unwrap();
    let line = text.lines().find(|l| l.starts_with("data: ")).unwrap();
    serde_json::from_str(&line["data: ".len()..]).unwrap()
}

#[test]
fn a_tools_list_event_is_rewritten() {
    for end in ["\n", "\r\n", "\r"] {
        let input = format!("event: message{end}id: 4{end}data: {TOOLS}{end}{end}");
        let out = run_whole(input.as_bytes());
        let v = data_of(&out);
        assert_eq!(v["result"]["tools"].as_array().unwrap().len(), 1, "{end:?}");
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.starts_with("event: message\nid: 4\ndata: "),
            "{text:?}"
        );
        assert!(text.ends_with("\n\n"));
    }
}

#[test]
fn multi_line_data_is_joined() {
    let input = "data: {\"jsonrpc\":\"2.0\",\"id\":1,\ndata: \"result\":{\"tools\":[{\"name\":\"x\"}]}}\n\n";
    let v = data_of(&run_whole(input.as_bytes()));
    assert!(v["result"]["tools"].as_array().unwrap().is_empty());
}

#[test]
fn other_events_pass_byte_for_byte() {
    let input = b": comment\r\n\r\nevent: ping\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\"}\n\ndata: plain text\rretry: 5\r\r\n\n";
    assert_eq!(run_whole(input), input);
}

#[test]
fn bom_at_stream_start_does_not_hide_a_tools_list() {
    let input = format!("\u{FEFF}data: {TOOLS}\n\n");
    let v = data_of(&run_whole(input.as_bytes()));
    assert_eq!(v["result"]["tools"].as_array().unwrap().len(), 1);
}

#[test]
fn an_oversized_event_is_replaced() {
    let mut f = SseToolsFilter::with_max_event(allowed(), 64);
    let mut out = f.push(format!("data: {TOOLS}\n\ndata: ok\n\n").as_bytes());
    out.extend(f.finish());
    let text = String::from_utf8(out).unwrap();
    assert!(text.contains("withheld"), "{text}");
    assert!(text.ends_with("data: ok\n\n"));
    assert!(!text.contains("delete_repo"));
}

#[test]
fn an_unfinished_event_is_filtered_at_the_end() {
    let out = run_whole(format!("data: {TOOLS}").as_bytes());
    assert!(!String::from_utf8(out).unwrap().contains("delete_repo"));
}

fn event_strategy() -> impl Strategy<Value = String> {
    let line = prop_oneof![
        Just("data: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/x\"}".to_owned()),
        Just(format!("data: {TOOLS}")),
        Just(": keepalive".to_owned()),
        Just("event: message".to_owned()),
        Just("id: 7".to_owned()),
        Just("data".to_owned()),
        "[a-z: ]{0,12}",
    ];
    let end = prop_oneof![Just("\n"), Just("\r\n"), Just("\r")];
    proptest::collection::vec((line, end.clone()), 0..4).prop_flat_map(move |lines| {
        end.clone().prop_map(move |e| {
            let mut s: String = lines.iter().map(|(l, e)| format!("{l}{e}")).collect();
            s.push_str(e);
            s
        })
    })
}

proptest! {
    #[test]
    fn any_split_gives_the_same_output(
        events in proptest::collection::vec(event_strategy(), 0..6),
        cuts in proptest::collection::vec(any::<usize>(), 0..8),
    ) {
        let input = events.concat();
        prop_assert_eq!(run_split(input.as_bytes(), &cuts), run_whole(input.as_bytes()));
    }

    #[test]
    fn any_split_of_any_bytes_gives_the_same_output(
        input in proptest::collection::vec(prop_oneof![Just(b'\r'), Just(b'\n'), Just(b'd'), any::<u8>()], 0..200),
        cuts in proptest::collection::vec(any::<usize>(), 0..8),
    ) {
        prop_assert_eq!(run_split(&input, &cuts), run_whole(&input));
    }

    /// (Each JSON data line ends its event: two JSON lines in one event join to
    /// something no client reads as one message, and are withheld.)
    #[test]
    fn events_without_a_tools_list_pass_unchanged(
        lines in proptest::collection::vec((prop_oneof![
            "(event|id|retry|data|:)[: ][a-zA-Z0-9 :\"/,.]{0,30}",
            Just(r#"data: {"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text"}]}}"#.to_owned() + "\n"),
        ], prop_oneof![Just("\n"), Just("\r\n"), Just("\r")]), 0..20),
        cuts in proptest::collection::vec(any::<usize>(), 0..8),
    ) {
        let input: String = lines.iter().map(|(l, e)| format!("{l}{e}")).collect();
        prop_assert_eq!(run_split(input.as_bytes(), &cuts), input.as_bytes());
    }
}
