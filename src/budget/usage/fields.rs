//! The JSON shapes that carry usage, and the running tally they feed.
//!
//! One reader covers every provider: an object (a whole body, or one event of a
//! stream) may hold `model` / `modelVersion`, a `usage` object (OpenAI chat and
//! Responses, Anthropic), a `usageMetadata` object (Gemini), and a `message`
//! (Anthropic `message_start`) or `response` (OpenAI Responses stream events)
//! object that holds `model` and `usage` in turn. Everything else is skipped
//! without being kept. Field names as in the providers' SDKs (openai
//! `CompletionUsage`, `ResponseUsage`; anthropic `Usage`, `MessageDeltaUsage`;
//! google-genai `GenerateContentResponseUsageMetadata`).
//!
//! Counts are read as they come, later values replacing earlier ones: stream
//! events carry cumulative counts (Anthropic's `message_delta`, Gemini chunks),
//! and a field that is absent or `null` leaves the earlier value standing, as the
//! Anthropic SDK's stream accumulator does.

use super::outcome::{Missing, Usage};
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::error::Category;
use std::fmt;

/// Longest model name kept; a longer one is treated as no name.
const MAX_MODEL_LEN: usize = 256;

/// Token counts and model seen so far in one response.
#[derive(Debug, Default)]
pub(super) struct Tally {
    model: Option<String>,
    input: Option<u64>,
    cache_creation: Option<u64>,
    cache_read: Option<u64>,
    output: Option<u64>,
    /// The first thing that was wrong with a usage section, if any.
    bad: Option<&'static str>,
}

impl Tally {
    /// Reads one JSON body: an object, or (Gemini's `streamGenerateContent`
    /// without `alt=sse`) an array of objects read in turn.
    pub(super) fn read_body(&mut self, body: &[u8]) -> Result<(), Missing> {
        let mut de = serde_json::Deserializer::from_slice(body);
        let outcome = match body.iter().find(|b| !b.is_ascii_whitespace()) {
            Some(b'[') => de.deserialize_seq(Sections(self)),
            _ => Section::read(&mut de).map(|s| self.absorb(s)),
        };
        outcome
            .and_then(|()| de.end())
            .map_err(|e| Missing::NotJson {
                what: match e.classify() {
                    Category::Eof => "complete JSON",
                    Category::Data => "a JSON object or an array of objects",
                    Category::Syntax | Category::Io => "valid JSON",
                },
                line: e.line(),
                column: e.column(),
            })
    }

    /// Reads one stream event's data. Data that is not a JSON object (such as
    /// OpenAI's `[DONE]`) carries no usage and is skipped.
    pub(super) fn read_event(&mut self, data: &[u8]) {
        let mut de = serde_json::Deserializer::from_slice(data);
        if let Ok(section) = Section::read(&mut de) {
            if de.end().is_ok() {
                self.absorb(section);
            }
        }
    }

    /// The usage read, or why there is none.
    pub(super) fn finish(self) -> Result<Usage, Missing> {
        if let Some(why) = self.bad {
            return Err(Missing::Malformed(why));
        }
        if self.input.is_none() && self.output.is_none() {
            return Err(Missing::NoUsage);
        }
        let input = [self.input, self.cache_creation, self.cache_read]
            .into_iter()
            .flatten()
            .fold(0u64, u64::saturating_add);
        Ok(Usage {
            model: self.model,
            input_tokens: input,
            output_tokens: self.output.unwrap_or(0),
        })
    }

    fn absorb(&mut self, section: Section) {
        if let Some(model) = section.model {
            self.model = Some(model);
        }
        for inner in [section.message, section.response].into_iter().flatten() {
            if let Some(model) = inner.model {
                self.model = Some(model);
            }
            if let Some(usage) = inner.usage {
                self.usage(usage);
            }
        }
        if let Some(usage) = section.usage {
            self.usage(usage);
        }
        if let Some(usage) = section.usage_metadata {
            self.gemini(usage);
        }
    }

    /// OpenAI (`prompt_tokens`/`completion_tokens` in chat completions,
    /// `input_tokens`/`output_tokens` in Responses) or Anthropic
    /// (`input_tokens`/`output_tokens`, plus the cache counts that OpenAI
    /// folds into its prompt count but Anthropic reports beside it).
    fn usage(&mut self, counts: Counts) {
        if let Some(why) = counts.bad {
            self.bad.get_or_insert(why);
            return;
        }
        if let Some(n) = counts.prompt_tokens.or(counts.input_tokens) {
            self.input = Some(n);
        }
        if let Some(n) = counts.completion_tokens.or(counts.output_tokens) {
            self.output = Some(n);
        }
        if let Some(n) = counts.cache_creation_input_tokens {
            self.cache_creation = Some(n);
        }
        if let Some(n) = counts.cache_read_input_tokens {
            self.cache_read = Some(n);
        }
    }

    /// Gemini: the prompt plus tool-use prompt are input (cached content is part
    /// of the prompt count); candidates plus thoughts are output (thinking is
    /// billed as output). Where `totalTokenCount` says more than that, the
    /// difference is counted as output, so a count added later is not lost.
    fn gemini(&mut self, counts: Counts) {
        if let Some(why) = counts.bad {
            self.bad.get_or_insert(why);
            return;
        }
        let any = [
            counts.prompt_token_count,
            counts.tool_use_prompt_token_count,
            counts.candidates_token_count,
            counts.thoughts_token_count,
            counts.total_token_count,
        ]
        .iter()
        .any(Option::is_some);
        if !any {
            return;
        }
        let sum = |a: Option<u64>, b: Option<u64>| a.unwrap_or(0).saturating_add(b.unwrap_or(0));
        let input = sum(
            counts.prompt_token_count,
            counts.tool_use_prompt_token_count,
        );
        let output = sum(counts.candidates_token_count, counts.thoughts_token_count)
            .max(counts.total_token_count.unwrap_or(0).saturating_sub(input));
        self.input = Some(input);
        self.output = Some(output);
        self.cache_creation = None;
        self.cache_read = None;
    }
}

/// The parts of one JSON object that can carry usage.
#[derive(Debug, Default)]
struct Section {
    model: Option<String>,
    usage: Option<Counts>,
    usage_metadata: Option<Counts>,
    message: Option<Inner>,
    response: Option<Inner>,
}

/// A `message` or `response` object: its model and usage.
#[derive(Debug, Default)]
struct Inner {
    model: Option<String>,
    usage: Option<Counts>,
}

impl Section {
    fn read<'de, D: Deserializer<'de>>(de: D) -> Result<Section, D::Error> {
        de.deserialize_map(SectionVisitor)
    }
}

struct SectionVisitor;

impl<'de> Visitor<'de> for SectionVisitor {
    type Value = Section;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Section, A::Error> {
        let mut section = Section::default();
        while let Some(key) = map.next_key::<Key>()? {
            match key {
                Key::Model => section.model = map.next_value::<Text>()?.0.or(section.model),
                Key::ModelVersion => {
                    section.model = map.next_value::<Text>()?.0.or(section.model);
                }
                Key::Usage => section.usage = map.next_value::<Option<Counts>>()?,
                Key::UsageMetadata => {
                    section.usage_metadata = map.next_value::<Option<Counts>>()?;
                }
                Key::Message => section.message = Some(map.next_value::<Inner>()?),
                Key::Response => section.response = Some(map.next_value::<Inner>()?),
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(section)
    }
}

impl<'de> de::Deserialize<'de> for Inner {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Inner, D::Error> {
        struct InnerVisitor;
        impl<'de> Visitor<'de> for InnerVisitor {
            type Value = Inner;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Inner, A::Error> {
                let mut inner = Inner::default();
                while let Some(key) = map.next_key::<Key>()? {
                    match key {
                        Key::Model => inner.model = map.next_value::<Text>()?.0.or(inner.model),
                        Key::Usage => inner.usage = map.next_value::<Option<Counts>>()?,
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(inner)
            }
            // Anything else (an OpenAI error event's `message` is a string)
            // holds no usage.
            fn visit_unit<E>(self) -> Result<Inner, E> {
                Ok(Inner::default())
            }
            fn visit_bool<E>(self, _: bool) -> Result<Inner, E> {
                Ok(Inner::default())
            }
            fn visit_i64<E>(self, _: i64) -> Result<Inner, E> {
                Ok(Inner::default())
            }
            fn visit_u64<E>(self, _: u64) -> Result<Inner, E> {
                Ok(Inner::default())
            }
            fn visit_f64<E>(self, _: f64) -> Result<Inner, E> {
                Ok(Inner::default())
            }
            fn visit_str<E>(self, _: &str) -> Result<Inner, E> {
                Ok(Inner::default())
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Inner, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Inner::default())
            }
        }
        de.deserialize_any(InnerVisitor)
    }
}

/// The elements of a top-level array, each absorbed as it is read (none kept).
struct Sections<'a>(&'a mut Tally);

impl<'de> Visitor<'de> for Sections<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of JSON objects")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(section) = seq.next_element_seed(SectionSeed)? {
            self.0.absorb(section);
        }
        Ok(())
    }
}

struct SectionSeed;

impl<'de> DeserializeSeed<'de> for SectionSeed {
    type Value = Section;
    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<Section, D::Error> {
        Section::read(de)
    }
}

/// The token counts of a `usage` or `usageMetadata` object. Any value that is not
/// a whole number from 0 to 2^64−1 (or `null`) marks the whole object bad.
#[derive(Debug, Default)]
struct Counts {
    prompt_tokens: Option<u64>,
    completion_tokens: Option<u64>,
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
    cache_creation_input_tokens: Option<u64>,
    cache_read_input_tokens: Option<u64>,
    prompt_token_count: Option<u64>,
    candidates_token_count: Option<u64>,
    thoughts_token_count: Option<u64>,
    tool_use_prompt_token_count: Option<u64>,
    total_token_count: Option<u64>,
    bad: Option<&'static str>,
}

impl<'de> de::Deserialize<'de> for Counts {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Counts, D::Error> {
        de.deserialize_any(CountsVisitor)
    }
}

const NOT_AN_OBJECT: &str = "a usage section is not a JSON object";
const NOT_A_COUNT: &str = "a token count is not a whole number from 0 to 2^64-1";

struct CountsVisitor;

impl CountsVisitor {
    fn not_an_object<E>(self) -> Result<Counts, E> {
        Ok(Counts {
            bad: Some(NOT_AN_OBJECT),
            ..Counts::default()
        })
    }
}

impl<'de> Visitor<'de> for CountsVisitor {
    type Value = Counts;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a usage object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Counts, A::Error> {
        let mut c = Counts::default();
        while let Some(key) = map.next_key::<Key>()? {
            let slot = match key {
                Key::PromptTokens => &mut c.prompt_tokens,
                Key::CompletionTokens => &mut c.completion_tokens,
                Key::InputTokens => &mut c.input_tokens,
                Key::OutputTokens => &mut c.output_tokens,
                Key::CacheCreationInputTokens => &mut c.cache_creation_input_tokens,
                Key::CacheReadInputTokens => &mut c.cache_read_input_tokens,
                Key::PromptTokenCount => &mut c.prompt_token_count,
                Key::CandidatesTokenCount => &mut c.candidates_token_count,
                Key::ThoughtsTokenCount => &mut c.thoughts_token_count,
                Key::ToolUsePromptTokenCount => &mut c.tool_use_prompt_token_count,
                Key::TotalTokenCount => &mut c.total_token_count,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                    continue;
                }
            };
            match map.next_value::<Count>()? {
                Count::Null => {}
                Count::Whole(n) => *slot = Some(n),
                Count::Bad => {
                    c.bad.get_or_insert(NOT_A_COUNT);
                }
            }
        }
        Ok(c)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Counts, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        self.not_an_object()
    }
    fn visit_bool<E>(self, _: bool) -> Result<Counts, E> {
        self.not_an_object()
    }
    fn visit_i64<E>(self, _: i64) -> Result<Counts, E> {
        self.not_an_object()
    }
    fn visit_u64<E>(self, _: u64) -> Result<Counts, E> {
        self.not_an_object()
    }
    fn visit_f64<E>(self, _: f64) -> Result<Counts, E> {
        self.not_an_object()
    }
    fn visit_str<E>(self, _: &str) -> Result<Counts, E> {
        self.not_an_object()
    }
}

/// One token count: `null`, a whole number, or anything else.
enum Count {
    Null,
    Whole(u64),
    Bad,
}

impl<'de> de::Deserialize<'de> for Count {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Count, D::Error> {
        struct CountVisitor;
        impl<'de> Visitor<'de> for CountVisitor {
            type Value = Count;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a token count")
            }
            fn visit_unit<E>(self) -> Result<Count, E> {
                Ok(Count::Null)
            }
            fn visit_u64<E>(self, n: u64) -> Result<Count, E> {
                Ok(Count::Whole(n))
            }
            fn visit_i64<E>(self, _: i64) -> Result<Count, E> {
                Ok(Count::Bad)
            }
            fn visit_f64<E>(self, _: f64) -> Result<Count, E> {
                Ok(Count::Bad)
            }
            fn visit_bool<E>(self, _: bool) -> Result<Count, E> {
                Ok(Count::Bad)
            }
            fn visit_str<E>(self, _: &str) -> Result<Count, E> {
                Ok(Count::Bad)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Count, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Count::Bad)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Count, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Count::Bad)
            }
        }
        de.deserialize_any(CountVisitor)
    }
}

/// A model name: a string of at most [`MAX_MODEL_LEN`] bytes, else none.
struct Text(Option<String>);

impl<'de> de::Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Text, D::Error> {
        struct TextVisitor;
        impl<'de> Visitor<'de> for TextVisitor {
            type Value = Text;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a model name")
            }
            fn visit_str<E>(self, s: &str) -> Result<Text, E> {
                Ok(Text(
                    (!s.is_empty() && s.len() <= MAX_MODEL_LEN).then(|| s.to_string()),
                ))
            }
            fn visit_unit<E>(self) -> Result<Text, E> {
                Ok(Text(None))
            }
            fn visit_u64<E>(self, _: u64) -> Result<Text, E> {
                Ok(Text(None))
            }
            fn visit_i64<E>(self, _: i64) -> Result<Text, E> {
                Ok(Text(None))
            }
            fn visit_f64<E>(self, _: f64) -> Result<Text, E> {
                Ok(Text(None))
            }
            fn visit_bool<E>(self, _: bool) -> Result<Text, E> {
                Ok(Text(None))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Text, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Text(None))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Text, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Text(None))
            }
        }
        de.deserialize_any(TextVisitor)
    }
}

/// The object keys this module reads; any other key is `Other`.
enum Key {
    Model,
    ModelVersion,
    Usage,
    UsageMetadata,
    Message,
    Response,
    PromptTokens,
    CompletionTokens,
    InputTokens,
    OutputTokens,
    CacheCreationInputTokens,
    CacheReadInputTokens,
    PromptTokenCount,
    CandidatesTokenCount,
    ThoughtsTokenCount,
    ToolUsePromptTokenCount,
    TotalTokenCount,
    Other,
}

impl<'de> de::Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Key, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = Key;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object key")
            }
            fn visit_str<E>(self, s: &str) -> Result<Key, E> {
                Ok(match s {
                    "model" => Key::Model,
                    "modelVersion" => Key::ModelVersion,
                    "usage" => Key::Usage,
                    "usageMetadata" => Key::UsageMetadata,
                    "message" => Key::Message,
                    "response" => Key::Response,
                    "prompt_tokens" => Key::PromptTokens,
                    "completion_tokens" => Key::CompletionTokens,
                    "input_tokens" => Key::InputTokens,
                    "output_tokens" => Key::OutputTokens,
                    "cache_creation_input_tokens" => Key::CacheCreationInputTokens,
                    "cache_read_input_tokens" => Key::CacheReadInputTokens,
                    "promptTokenCount" => Key::PromptTokenCount,
                    "candidatesTokenCount" => Key::CandidatesTokenCount,
                    "thoughtsTokenCount" => Key::ThoughtsTokenCount,
                    "toolUsePromptTokenCount" => Key::ToolUsePromptTokenCount,
                    "totalTokenCount" => Key::TotalTokenCount,
                    _ => Key::Other,
                })
            }
        }
        de.deserialize_identifier(KeyVisitor)
    }
}
