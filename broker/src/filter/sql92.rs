//! RocketMQ's SQL92 message filter: a JMS-selector dialect evaluated over a message's
//! properties (`apache/rocketmq:filter/.../SelectorParser.jj` is the grammar's origin).
//!
//! Hand-written because general SQL parsers do not accept this dialect (`10L` literals,
//! `CONTAINS`/`STARTSWITH`/`ENDSWITH`, identifiers with `$`) and do not give its
//! three-valued semantics, where a missing property makes a comparison unknown, which
//! never matches.

use std::cmp::Ordering;
use std::fmt;

/// How deep parentheses, NOT and unary signs may nest. Apache RocketMQ's JavaCC parser has
/// no explicit limit: there, deep input overflows the Java thread's stack, which throws an
/// error. A Rust stack overflow aborts the whole broker instead, so the parser, `eval` and
/// `Drop`, which all recurse once per level, stop here. 64 is far beyond any filter a person
/// writes; an unoptimised build needs about 7 KiB of stack a level, so even that stays well
/// inside a 2 MiB tokio worker stack.
const MAX_DEPTH: usize = 64;

/// How many operands (property names, literals and parenthesised groups) an expression may
/// have. A filter runs on every message a pull reads, so this bounds the work one
/// subscription can cause per message; a long `OR` list is better written as `IN (...)`,
/// which counts once.
const MAX_OPERANDS: usize = 4096;

/// A compiled expression.
#[derive(Debug, Clone, PartialEq)]
pub struct Sql92 {
    root: Expr,
}

/// Why an expression does not compile; answered as SUBSCRIPTION_PARSE_FAILED.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub position: usize,
    pub reason: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "at {}: {}", self.position, self.reason)
    }
}

impl std::error::Error for ParseError {}

#[derive(Debug, Clone, PartialEq)]
enum Literal {
    Long(i64),
    Double(f64),
    String(String),
    Bool(bool),
    Null,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Compare {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StringTest {
    Contains,
    StartsWith,
    EndsWith,
}

#[derive(Debug, Clone, PartialEq)]
enum Expr {
    Literal(Literal),
    Property(String),
    Negate(Box<Expr>),
    Not(Box<Expr>),
    /// n-ary rather than nested pairs, so that `a AND b AND c ...` is one node however long
    /// the chain: the tree's depth then follows nesting alone, which `MAX_DEPTH` bounds,
    /// where a pair per `AND` builds a tree as deep as the chain is long.
    And(Vec<Expr>),
    Or(Vec<Expr>),
    Compare(Compare, Box<Expr>, Box<Expr>),
    Between {
        negated: bool,
        value: Box<Expr>,
        low: Box<Expr>,
        high: Box<Expr>,
    },
    In {
        negated: bool,
        value: Box<Expr>,
        set: Vec<String>,
    },
    IsNull {
        negated: bool,
        value: Box<Expr>,
    },
    Text {
        negated: bool,
        test: StringTest,
        value: Box<Expr>,
        pattern: String,
    },
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Ident(String),
    Keyword(&'static str),
    Long(i64),
    Double(f64),
    String(String),
    Symbol(&'static str),
    End,
}

const KEYWORDS: [&str; 14] = [
    "AND",
    "OR",
    "NOT",
    "BETWEEN",
    "IN",
    "IS",
    "NULL",
    "TRUE",
    "FALSE",
    "CONTAINS",
    "STARTSWITH",
    "ENDSWITH",
    "LIKE",
    "ESCAPE",
];

fn tokenize(text: &str) -> Result<Vec<(usize, Token)>, ParseError> {
    let bytes = text.as_bytes();
    let mut tokens = Vec::new();
    let mut at = 0;
    let fail = |position: usize, reason: &str| ParseError {
        position,
        reason: reason.to_string(),
    };
    while at < bytes.len() {
        let c = bytes[at];
        let start = at;
        if c.is_ascii_whitespace() {
            at += 1;
            continue;
        }
        if c == b'\'' {
            let mut value = String::new();
            at += 1;
            loop {
                let Some(&next) = bytes.get(at) else {
                    return Err(fail(start, "unterminated string"));
                };
                if next == b'\'' {
                    if bytes.get(at + 1) == Some(&b'\'') {
                        value.push('\'');
                        at += 2;
                        continue;
                    }
                    at += 1;
                    break;
                }
                let ch = text[at..].chars().next().expect("inside the text");
                value.push(ch);
                at += ch.len_utf8();
            }
            tokens.push((start, Token::String(value)));
            continue;
        }
        if c.is_ascii_digit() || (c == b'.' && bytes.get(at + 1).is_some_and(u8::is_ascii_digit)) {
            while at < bytes.len() && (bytes[at].is_ascii_digit() || bytes[at] == b'.') {
                at += 1;
            }
            if at < bytes.len() && (bytes[at] == b'e' || bytes[at] == b'E') {
                at += 1;
                if at < bytes.len() && (bytes[at] == b'+' || bytes[at] == b'-') {
                    at += 1;
                }
                while at < bytes.len() && bytes[at].is_ascii_digit() {
                    at += 1;
                }
            }
            let number = &text[start..at];
            let token = if number.contains(['.', 'e', 'E']) {
                Token::Double(number.parse().map_err(|_| fail(start, "bad number"))?)
            } else {
                Token::Long(
                    number
                        .parse()
                        .map_err(|_| fail(start, "integer out of range"))?,
                )
            };
            if at < bytes.len() && (bytes[at] == b'L' || bytes[at] == b'l') {
                at += 1;
            }
            tokens.push((start, token));
            continue;
        }
        if c.is_ascii_alphabetic() || c == b'_' || c == b'$' {
            while at < bytes.len()
                && (bytes[at].is_ascii_alphanumeric() || bytes[at] == b'_' || bytes[at] == b'$')
            {
                at += 1;
            }
            let word = &text[start..at];
            let upper = word.to_ascii_uppercase();
            let token = match KEYWORDS.iter().find(|k| **k == upper) {
                Some(keyword) => Token::Keyword(keyword),
                None => Token::Ident(word.to_string()),
            };
            tokens.push((start, token));
            continue;
        }
        let symbol = ["<>", ">=", "<=", "=", ">", "<", "(", ")", ",", "+", "-"]
            .into_iter()
            .find(|s| text[at..].starts_with(s))
            .ok_or_else(|| fail(start, "unexpected character"))?;
        at += symbol.len();
        tokens.push((start, Token::Symbol(symbol)));
    }
    tokens.push((text.len(), Token::End));
    Ok(tokens)
}

struct Parser {
    tokens: Vec<(usize, Token)>,
    at: usize,
    /// Parentheses, NOTs and signs around the token being parsed.
    depth: usize,
    operands: usize,
}

impl Parser {
    fn peek(&self) -> &Token {
        &self.tokens[self.at].1
    }

    fn position(&self) -> usize {
        self.tokens[self.at].0
    }

    fn advance(&mut self) -> Token {
        let token = self.tokens[self.at].1.clone();
        if self.at + 1 < self.tokens.len() {
            self.at += 1;
        }
        token
    }

    fn fail<T>(&self, reason: impl Into<String>) -> Result<T, ParseError> {
        Err(ParseError {
            position: self.position(),
            reason: reason.into(),
        })
    }

    fn eat_keyword(&mut self, keyword: &str) -> bool {
        if matches!(self.peek(), Token::Keyword(k) if *k == keyword) {
            self.advance();
            true
        } else {
            false
        }
    }

    fn eat_symbol(&mut self, symbol: &str) -> bool {
        if matches!(self.peek(), Token::Symbol(s) if *s == symbol) {
            self.advance();
            true
        } else {
            false
        }
    }

    fn expect_symbol(&mut self, symbol: &str) -> Result<(), ParseError> {
        if self.eat_symbol(symbol) {
            Ok(())
        } else {
            self.fail(format!("expected '{symbol}'"))
        }
    }

    /// Parses one level deeper, or refuses past `MAX_DEPTH`.
    fn nested(
        &mut self,
        parse: fn(&mut Self) -> Result<Expr, ParseError>,
    ) -> Result<Expr, ParseError> {
        if self.depth == MAX_DEPTH {
            return self.fail(format!("expression nested deeper than {MAX_DEPTH}"));
        }
        self.depth += 1;
        let inner = parse(self);
        self.depth -= 1;
        inner
    }

    /// Terms separated by `keyword`: a single term stands alone, more make one n-ary node.
    fn chain(
        &mut self,
        keyword: &str,
        term: fn(&mut Self) -> Result<Expr, ParseError>,
        node: fn(Vec<Expr>) -> Expr,
    ) -> Result<Expr, ParseError> {
        let first = term(self)?;
        if !self.eat_keyword(keyword) {
            return Ok(first);
        }
        let mut terms = vec![first, term(self)?];
        while self.eat_keyword(keyword) {
            terms.push(term(self)?);
        }
        Ok(node(terms))
    }

    fn or(&mut self) -> Result<Expr, ParseError> {
        self.chain("OR", Self::and, Expr::Or)
    }

    fn and(&mut self) -> Result<Expr, ParseError> {
        self.chain("AND", Self::not, Expr::And)
    }

    fn not(&mut self) -> Result<Expr, ParseError> {
        if self.eat_keyword("NOT") {
            return Ok(Expr::Not(Box::new(self.nested(Self::not)?)));
        }
        self.predicate()
    }

    fn predicate(&mut self) -> Result<Expr, ParseError> {
        let value = Box::new(self.unary()?);
        let operator = match self.peek() {
            Token::Symbol("=") => Some(Compare::Eq),
            Token::Symbol("<>") => Some(Compare::Ne),
            Token::Symbol(">") => Some(Compare::Gt),
            Token::Symbol(">=") => Some(Compare::Ge),
            Token::Symbol("<") => Some(Compare::Lt),
            Token::Symbol("<=") => Some(Compare::Le),
            _ => None,
        };
        if let Some(operator) = operator {
            self.advance();
            return Ok(Expr::Compare(operator, value, Box::new(self.unary()?)));
        }
        if self.eat_keyword("IS") {
            let negated = self.eat_keyword("NOT");
            if !self.eat_keyword("NULL") {
                return self.fail("expected NULL after IS");
            }
            return Ok(Expr::IsNull { negated, value });
        }
        let negated = self.eat_keyword("NOT");
        if self.eat_keyword("BETWEEN") {
            let low = self.unary()?;
            if !self.eat_keyword("AND") {
                return self.fail("expected AND in BETWEEN");
            }
            let high = self.unary()?;
            if let (Expr::Literal(l), Expr::Literal(h)) = (&low, &high) {
                if compare(l, h).is_some_and(|order| order == Ordering::Greater) {
                    return self.fail("BETWEEN needs the lower bound first");
                }
            }
            return Ok(Expr::Between {
                negated,
                value,
                low: Box::new(low),
                high: Box::new(high),
            });
        }
        if self.eat_keyword("IN") {
            self.expect_symbol("(")?;
            let mut set = Vec::new();
            loop {
                match self.advance() {
                    Token::String(s) => set.push(s),
                    _ => return self.fail("IN takes string literals"),
                }
                if self.eat_symbol(")") {
                    break;
                }
                self.expect_symbol(",")?;
            }
            return Ok(Expr::In {
                negated,
                value,
                set,
            });
        }
        let test = match self.peek() {
            Token::Keyword("CONTAINS") => Some(StringTest::Contains),
            Token::Keyword("STARTSWITH") => Some(StringTest::StartsWith),
            Token::Keyword("ENDSWITH") => Some(StringTest::EndsWith),
            Token::Keyword("LIKE") => return self.fail("LIKE is not supported"),
            _ => None,
        };
        if let Some(test) = test {
            self.advance();
            let Token::String(pattern) = self.advance() else {
                return self.fail("expected a string literal");
            };
            return Ok(Expr::Text {
                negated,
                test,
                value,
                pattern,
            });
        }
        if negated {
            return self.fail("expected BETWEEN, IN, CONTAINS, STARTSWITH or ENDSWITH after NOT");
        }
        Ok(*value)
    }

    fn unary(&mut self) -> Result<Expr, ParseError> {
        if self.eat_symbol("+") {
            return self.nested(Self::unary);
        }
        if self.eat_symbol("-") {
            return Ok(match self.nested(Self::unary)? {
                Expr::Literal(Literal::Long(n)) => Expr::Literal(Literal::Long(-n)),
                Expr::Literal(Literal::Double(n)) => Expr::Literal(Literal::Double(-n)),
                other => Expr::Negate(Box::new(other)),
            });
        }
        self.operands += 1;
        if self.operands > MAX_OPERANDS {
            return self.fail(format!("expression has more than {MAX_OPERANDS} operands"));
        }
        match self.advance() {
            Token::Long(n) => Ok(Expr::Literal(Literal::Long(n))),
            Token::Double(n) => Ok(Expr::Literal(Literal::Double(n))),
            Token::String(s) => Ok(Expr::Literal(Literal::String(s))),
            Token::Keyword("TRUE") => Ok(Expr::Literal(Literal::Bool(true))),
            Token::Keyword("FALSE") => Ok(Expr::Literal(Literal::Bool(false))),
            Token::Keyword("NULL") => Ok(Expr::Literal(Literal::Null)),
            Token::Ident(name) => Ok(Expr::Property(name)),
            Token::Symbol("(") => {
                let inner = self.nested(Self::or)?;
                self.expect_symbol(")")?;
                Ok(inner)
            }
            Token::End => self.fail("unexpected end of expression"),
            other => {
                self.at = self.at.saturating_sub(1);
                self.fail(format!("unexpected {other:?}"))
            }
        }
    }
}

impl Sql92 {
    pub fn compile(text: &str) -> Result<Sql92, ParseError> {
        let mut parser = Parser {
            tokens: tokenize(text)?,
            at: 0,
            depth: 0,
            operands: 0,
        };
        let root = parser.or()?;
        if parser.peek() != &Token::End {
            return parser.fail("unexpected text after the expression");
        }
        Ok(Sql92 { root })
    }

    /// True only when the expression is true for these properties; unknown is no match.
    pub fn matches<'a>(&self, property: impl Fn(&str) -> Option<&'a str> + Copy) -> bool {
        eval(&self.root, property) == Literal::Bool(true)
    }
}

/// Orders two values the way the Java comparison does once strings have been converted to
/// the other side's type; `None` when they cannot be compared.
fn compare(left: &Literal, right: &Literal) -> Option<Ordering> {
    use Literal::*;
    match (left, right) {
        (Long(a), Long(b)) => Some(a.cmp(b)),
        (Long(a), Double(b)) => (*a as f64).partial_cmp(b),
        (Double(a), Long(b)) => a.partial_cmp(&(*b as f64)),
        (Double(a), Double(b)) => a.partial_cmp(b),
        (String(a), String(b)) => match (a.parse::<f64>(), b.parse::<f64>()) {
            (Ok(x), Ok(y)) => x.partial_cmp(&y),
            _ => None,
        },
        (String(s), number @ (Long(_) | Double(_))) => compare(&as_number(s)?, number),
        (number @ (Long(_) | Double(_)), String(s)) => compare(number, &as_number(s)?),
        _ => None,
    }
}

fn as_number(text: &str) -> Option<Literal> {
    let text = text.trim();
    text.parse::<i64>()
        .map(Literal::Long)
        .ok()
        .or_else(|| text.parse::<f64>().ok().map(Literal::Double))
}

fn equal(left: &Literal, right: &Literal) -> Option<bool> {
    use Literal::*;
    match (left, right) {
        (Null, _) | (_, Null) => None,
        (String(a), String(b)) => Some(a == b),
        (Bool(a), Bool(b)) => Some(a == b),
        (String(s), Bool(b)) | (Bool(b), String(s)) => {
            Some(s.eq_ignore_ascii_case(if *b { "true" } else { "false" }))
        }
        _ => compare(left, right).map(|order| order == Ordering::Equal),
    }
}

fn truth(value: Option<bool>) -> Literal {
    value.map(Literal::Bool).unwrap_or(Literal::Null)
}

fn as_bool(value: &Literal) -> Option<bool> {
    match value {
        Literal::Bool(b) => Some(*b),
        _ => None,
    }
}

/// An AND (`decisive` false) or an OR (`decisive` true) of `terms`.
fn decide<'a>(
    terms: &[Expr],
    decisive: bool,
    property: impl Fn(&str) -> Option<&'a str> + Copy,
) -> Literal {
    let mut unknown = false;
    for term in terms {
        match as_bool(&eval(term, property)) {
            Some(value) if value == decisive => return Literal::Bool(decisive),
            Some(_) => {}
            None => unknown = true,
        }
    }
    truth((!unknown).then_some(!decisive))
}

fn eval<'a>(expr: &Expr, property: impl Fn(&str) -> Option<&'a str> + Copy) -> Literal {
    match expr {
        Expr::Literal(value) => value.clone(),
        Expr::Property(name) => property(name)
            .map(|v| Literal::String(v.to_string()))
            .unwrap_or(Literal::Null),
        Expr::Negate(inner) => match eval(inner, property) {
            Literal::Long(n) => Literal::Long(-n),
            Literal::Double(n) => Literal::Double(-n),
            Literal::String(s) => match as_number(&s) {
                Some(Literal::Long(n)) => Literal::Long(-n),
                Some(Literal::Double(n)) => Literal::Double(-n),
                _ => Literal::Null,
            },
            _ => Literal::Null,
        },
        Expr::Not(inner) => truth(as_bool(&eval(inner, property)).map(|b| !b)),
        // Three-valued: one false term decides an AND (one true term an OR), else any
        // unknown term leaves it unknown. Terms have no side effects, so stopping early is safe.
        Expr::And(terms) => decide(terms, false, property),
        Expr::Or(terms) => decide(terms, true, property),
        Expr::Compare(op, left, right) => {
            let (l, r) = (eval(left, property), eval(right, property));
            truth(match op {
                Compare::Eq => equal(&l, &r),
                Compare::Ne => equal(&l, &r).map(|e| !e),
                Compare::Gt => compare(&l, &r).map(|o| o == Ordering::Greater),
                Compare::Ge => compare(&l, &r).map(|o| o != Ordering::Less),
                Compare::Lt => compare(&l, &r).map(|o| o == Ordering::Less),
                Compare::Le => compare(&l, &r).map(|o| o != Ordering::Greater),
            })
        }
        Expr::Between {
            negated,
            value,
            low,
            high,
        } => {
            let v = eval(value, property);
            let inside = match (
                compare(&v, &eval(low, property)),
                compare(&v, &eval(high, property)),
            ) {
                (Some(a), Some(b)) => Some(a != Ordering::Less && b != Ordering::Greater),
                _ => None,
            };
            truth(inside.map(|inside| inside != *negated))
        }
        Expr::In {
            negated,
            value,
            set,
        } => match eval(value, property) {
            Literal::String(s) => Literal::Bool(set.contains(&s) != *negated),
            _ => Literal::Null,
        },
        Expr::IsNull { negated, value } => {
            Literal::Bool((eval(value, property) == Literal::Null) != *negated)
        }
        Expr::Text {
            negated,
            test,
            value,
            pattern,
        } => match eval(value, property) {
            Literal::String(s) => {
                let found = match test {
                    StringTest::Contains => s.contains(pattern.as_str()),
                    StringTest::StartsWith => s.starts_with(pattern.as_str()),
                    StringTest::EndsWith => s.ends_with(pattern.as_str()),
                };
                Literal::Bool(found != *negated)
            }
            _ => Literal::Null,
        },
    }
}

#[cfg(test)]
mod sql92_test;
