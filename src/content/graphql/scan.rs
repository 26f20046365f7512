//! The fast path of [`super::operation`]: apollo-parser's own lexer and a
//! recognizer for the common shape of executable documents, without building
//! apollo-parser's syntax tree (most of the cost of a full parse).
//!
//! Soundness: [`operations`] answers `Some` only for a document that
//! apollo-parser parses without an error, and then lists the same operations
//! (kind and name, in order) that the syntax tree holds. Everything else,
//! including every error, goes to the full parse, which stays the authority.
//! Why `Some` implies that:
//! - The tokens are apollo-parser's (the same [`Lexer`], the same token
//!   limit); any lexer error makes the scan give up. Whitespace, comments and
//!   commas are skipped, as apollo-parser skips them.
//! - The grammar below is a subset of the one apollo-parser implements
//!   (GraphQL October 2021, executable definitions only): operations (with
//!   variable definitions without directives), fragments, fields, aliases,
//!   arguments, directives, fragment spreads, inline fragments, and values,
//!   with no variables in default values. Every repetition the spec writes
//!   with `+` (selections, arguments, variable definitions) needs one item.
//!   Anything outside it (type system definitions, descriptions, empty
//!   argument lists, ...) makes the scan give up.
//! - The only other errors apollo-parser raises on such input are its
//!   recursion limit (it counts nested selection sets, list types, and list
//!   and object values) and its token limit. The scan counts the same
//!   nesting and gives up at half of the parser's limit; the token limit is
//!   the lexer's, shared.
//! - Names are checked as apollo-parser checks them (ASCII letters, digits
//!   and `_`, not starting with a digit).
//! - apollo-parser looks two tokens ahead, past whitespace and comments but
//!   not past commas, after a field name (for an alias) and after `...`; the
//!   scan gives up where a comma sits there, since the parser then reads the
//!   tokens differently from the spec.
//! - Spreads are told apart as apollo-parser does: `...` and a name other
//!   than `on` is a fragment spread; `...` and `on`, `@` or `{` is an inline
//!   fragment.
//!
//! The property test in `tests.rs` checks the claim against apollo-parser on
//! generated and mutated documents.

use apollo_parser::{Lexer, Token, TokenKind};

/// One operation of a document as the scan found it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Scanned<'a> {
    /// `query`, `mutation` or `subscription`; `None` for the `{ ... }` shorthand.
    pub keyword: Option<&'a str>,
    /// The operation's name, if it has one.
    pub name: Option<&'a str>,
}

/// The operations of `document`, in order, when the fast path can vouch for
/// them; `None` sends the document to the full parse.
pub(super) fn operations(
    document: &str,
    max_tokens: usize,
    max_depth: usize,
    max_definitions: usize,
) -> Option<Vec<Scanned<'_>>> {
    let mut scan = Scan {
        lexer: Lexer::new(document).with_limit(max_tokens),
        next: None,
        comma_before: false,
        depth: 0,
        max_depth: max_depth / 2,
    };
    scan.advance()?;
    let mut operations = Vec::new();
    let mut definitions = 0;
    while !scan.at(TokenKind::Eof) {
        definitions += 1;
        if definitions > max_definitions {
            return None;
        }
        if scan.at(TokenKind::LCurly) {
            scan.selection_set()?;
            operations.push(Scanned {
                keyword: None,
                name: None,
            });
            continue;
        }
        let keyword = scan.name()?;
        match keyword {
            "query" | "mutation" | "subscription" => {}
            "fragment" => {
                scan.fragment()?;
                continue;
            }
            _ => return None,
        }
        let name = if scan.at(TokenKind::Name) {
            Some(scan.name()?)
        } else {
            None
        };
        if scan.at(TokenKind::LParen) {
            scan.variable_definitions()?;
        }
        scan.directives(false)?;
        scan.selection_set()?;
        operations.push(Scanned {
            keyword: Some(keyword),
            name,
        });
    }
    (definitions > 0).then_some(operations)
}

struct Scan<'a> {
    lexer: Lexer<'a>,
    /// The next significant token; `None` only before the first `advance`.
    next: Option<Token<'a>>,
    /// Whether a comma came between `next` and the token before it.
    comma_before: bool,
    depth: usize,
    max_depth: usize,
}

impl<'a> Scan<'a> {
    /// Moves to the next token that is not whitespace, a comment or a comma;
    /// `None` on a lexer error or past the end.
    fn advance(&mut self) -> Option<()> {
        self.comma_before = false;
        loop {
            let token = self.lexer.next()?.ok()?;
            match token.kind() {
                TokenKind::Whitespace | TokenKind::Comment => {}
                TokenKind::Comma => self.comma_before = true,
                _ => {
                    self.next = Some(token);
                    return Some(());
                }
            }
        }
    }

    fn at(&self, kind: TokenKind) -> bool {
        self.next.as_ref().is_some_and(|t| t.kind() == kind)
    }

    /// Takes the next token if it is a `kind`.
    fn expect(&mut self, kind: TokenKind) -> Option<Token<'a>> {
        let token = self.next.clone().filter(|t| t.kind() == kind)?;
        self.advance()?;
        Some(token)
    }

    /// Takes the next token if it is a `kind`; `Some(false)` if it is not.
    fn eat(&mut self, kind: TokenKind) -> Option<bool> {
        if self.at(kind) {
            self.advance()?;
            Some(true)
        } else {
            Some(false)
        }
    }

    /// A name, checked as apollo-parser checks it.
    fn name(&mut self) -> Option<&'a str> {
        let name = self.expect(TokenKind::Name)?.data();
        let mut chars = name.bytes();
        let start = chars.next()?;
        (matches!(start, b'_' | b'A'..=b'Z' | b'a'..=b'z')
            && chars.all(|c| matches!(c, b'_' | b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9')))
        .then_some(name)
    }

    /// apollo-parser looks past whitespace but not past commas to tell an
    /// alias from a field and a spread from an inline fragment: give up
    /// where a comma sits there.
    fn comma_before_next(&self) -> bool {
        self.comma_before
    }

    fn deeper(&mut self) -> Option<()> {
        self.depth += 1;
        (self.depth <= self.max_depth).then_some(())
    }

    /// After `fragment`: `Name on Type Directives? SelectionSet`.
    fn fragment(&mut self) -> Option<()> {
        let name = self.name()?;
        let on = self.name()?;
        if name == "on" || on != "on" {
            return None;
        }
        self.name()?;
        self.directives(false)?;
        self.selection_set()
    }

    fn selection_set(&mut self) -> Option<()> {
        self.expect(TokenKind::LCurly)?;
        self.deeper()?;
        if self.at(TokenKind::RCurly) {
            return None;
        }
        while !self.eat(TokenKind::RCurly)? {
            self.selection()?;
        }
        self.depth -= 1;
        Some(())
    }

    fn selection(&mut self) -> Option<()> {
        if self.eat(TokenKind::Spread)? {
            if self.comma_before_next() {
                return None;
            }
            let on = match &self.next {
                Some(t) if t.kind() == TokenKind::Name => t.data() == "on",
                Some(t) if matches!(t.kind(), TokenKind::At | TokenKind::LCurly) => {
                    self.directives(false)?;
                    return self.selection_set();
                }
                _ => return None,
            };
            self.name()?;
            if on {
                self.name()?;
                self.directives(false)?;
                return self.selection_set();
            }
            return self.directives(false);
        }
        self.name()?;
        if self.at(TokenKind::Colon) {
            if self.comma_before_next() {
                return None;
            }
            self.advance()?;
            self.name()?;
        }
        if self.at(TokenKind::LParen) {
            self.arguments(false)?;
        }
        self.directives(false)?;
        if self.at(TokenKind::LCurly) {
            self.selection_set()?;
        }
        Some(())
    }

    fn arguments(&mut self, constant: bool) -> Option<()> {
        self.expect(TokenKind::LParen)?;
        if self.at(TokenKind::RParen) {
            return None;
        }
        while !self.eat(TokenKind::RParen)? {
            self.name()?;
            self.expect(TokenKind::Colon)?;
            self.value(constant)?;
        }
        Some(())
    }

    fn directives(&mut self, constant: bool) -> Option<()> {
        while self.eat(TokenKind::At)? {
            self.name()?;
            if self.at(TokenKind::LParen) {
                self.arguments(constant)?;
            }
        }
        Some(())
    }

    fn value(&mut self, constant: bool) -> Option<()> {
        let kind = self.next.as_ref()?.kind();
        match kind {
            TokenKind::Dollar if !constant => {
                self.advance()?;
                self.name().map(|_| ())
            }
            TokenKind::Int | TokenKind::Float | TokenKind::StringValue | TokenKind::Name => {
                self.advance()
            }
            TokenKind::LBracket => {
                self.advance()?;
                self.deeper()?;
                while !self.eat(TokenKind::RBracket)? {
                    self.value(constant)?;
                }
                self.depth -= 1;
                Some(())
            }
            TokenKind::LCurly => {
                self.advance()?;
                self.deeper()?;
                while !self.eat(TokenKind::RCurly)? {
                    self.name()?;
                    self.expect(TokenKind::Colon)?;
                    self.value(constant)?;
                }
                self.depth -= 1;
                Some(())
            }
            _ => None,
        }
    }

    /// `( ($name: Type (= ConstValue)?)+ )`, without directives.
    fn variable_definitions(&mut self) -> Option<()> {
        self.expect(TokenKind::LParen)?;
        if self.at(TokenKind::RParen) {
            return None;
        }
        while !self.eat(TokenKind::RParen)? {
            self.expect(TokenKind::Dollar)?;
            self.name()?;
            self.expect(TokenKind::Colon)?;
            self.ty()?;
            if self.eat(TokenKind::Eq)? {
                self.value(true)?;
            }
        }
        Some(())
    }

    fn ty(&mut self) -> Option<()> {
        if self.eat(TokenKind::LBracket)? {
            self.deeper()?;
            self.ty()?;
            self.expect(TokenKind::RBracket)?;
            self.depth -= 1;
        } else {
            self.name()?;
        }
        self.eat(TokenKind::Bang).map(|_| ())
    }
}
