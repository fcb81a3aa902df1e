//! Stage 1, parse: turn the agent's text into sqlparser statements, within caps.
//!
//! Caps come first because everything after this stage recurses over the tree: the size cap
//! bounds the work, and the nesting cap (measured on tokens, before the parser builds anything)
//! keeps trees shallow enough that visiting, printing and dropping them cannot overflow a
//! thread's stack. Constructs whose meaning differs between sqlparser and PostgreSQL at the
//! token level (`U&"..."`) are refused here too.

use sqlparser::ast::Statement;
use sqlparser::keywords::Keyword;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::{Token, TokenWithSpan, Tokenizer, Whitespace};

use crate::refusal::{ErrorCode, Refusal};
use crate::sql::DIALECT;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest SQL text accepted, in bytes.
    pub max_sql_bytes: usize,
    /// Deepest nesting accepted: parentheses, subqueries, CASE, and chains of operators.
    pub max_depth: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_sql_bytes: 64 * 1024,
            max_depth: 200,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    #[error("the SQL is {size} bytes; the limit is {max} bytes")]
    TooLarge { size: usize, max: usize },
    #[error("the SQL is empty")]
    Empty,
    #[error(
        "the SQL nests {depth} levels deep at line {line}, column {column}; the limit is {max}"
    )]
    TooDeep {
        depth: usize,
        max: usize,
        line: u64,
        column: u64,
    },
    #[error("U& Unicode-escape syntax at line {line}, column {column} is not accepted")]
    UnicodeEscape { line: u64, column: u64 },
    #[error("a number runs into the word `{word}` at line {line}, column {column}")]
    NumberRunsIntoWord {
        word: String,
        line: u64,
        column: u64,
    },
    #[error("the SQL does not parse: {0}")]
    Syntax(String),
}

impl Refusal for ParseError {
    fn code(&self) -> ErrorCode {
        match self {
            ParseError::TooLarge { .. } => ErrorCode::InvalidRequest,
            _ => ErrorCode::ParseError,
        }
    }

    fn hint(&self) -> String {
        match self {
            ParseError::TooLarge { .. } => {
                "Send a shorter query: select fewer columns or split the question.".into()
            }
            ParseError::Empty => "Send one SELECT query.".into(),
            ParseError::TooDeep { .. } => {
                "Flatten the query: fewer nested parentheses or subqueries; use a CTE (WITH) or IN (...) instead of long chains.".into()
            }
            ParseError::UnicodeEscape { .. } => {
                "Write identifiers and strings plainly (\"name\", 'text'), without U&.".into()
            }
            ParseError::NumberRunsIntoWord { .. } => {
                "Write numbers in decimal (no 0x, 0b or 0o prefix) and put a space between a number and a name.".into()
            }
            ParseError::Syntax(_) => {
                "Fix the syntax at the position given; write one PostgreSQL SELECT query.".into()
            }
        }
    }
}

/// Parses `sql` into statements. Does not judge them: that is `guard`'s job.
pub fn parse(sql: &str, limits: &Limits) -> Result<Vec<Statement>, ParseError> {
    if sql.len() > limits.max_sql_bytes {
        return Err(ParseError::TooLarge {
            size: sql.len(),
            max: limits.max_sql_bytes,
        });
    }
    let tokens = Tokenizer::new(&DIALECT, sql)
        .tokenize_with_location()
        .map_err(|e| ParseError::Syntax(e.to_string()))?;
    check_tokens(&tokens, limits.max_depth)?;
    let statements = Parser::new(&DIALECT)
        .with_recursion_limit(limits.max_depth)
        .with_tokens_with_locations(tokens)
        .parse_statements()
        .map_err(|e| match e {
            sqlparser::parser::ParserError::RecursionLimitExceeded => ParseError::TooDeep {
                depth: limits.max_depth + 1,
                max: limits.max_depth,
                line: 0,
                column: 0,
            },
            other => ParseError::Syntax(other.to_string()),
        })?;
    if statements.is_empty() {
        return Err(ParseError::Empty);
    }
    Ok(statements)
}

/// One pass over the tokens: refuse `U&` escapes and numbers glued to words, and measure nesting.
///
/// A number directly followed by a word is `0b101`, `0o17`, `1_000` or `123abc`: PostgreSQL 16
/// reads the first three as one number and refuses the last, while sqlparser reads `0 AS b101`.
///
/// The depth measured bounds the depth of the tree the parser will build: every open
/// parenthesis or CASE opens a level, and every operator adds one to its level (a chain
/// `a + b + c ...` is a left-deep tree as deep as it is long). Commas and clause keywords end an
/// item, so long select lists and many clauses cost nothing.
fn check_tokens(tokens: &[TokenWithSpan], max_depth: usize) -> Result<(), ParseError> {
    // Each level: the operators counted in its current item.
    let mut levels: Vec<usize> = vec![0];
    let mut depth: usize = 1;
    let mut previous_word_u = false;
    let mut previous_number = false;
    for token in tokens {
        let start = token.span.start;
        if previous_number {
            if let Token::Word(w) = &token.token {
                return Err(ParseError::NumberRunsIntoWord {
                    word: w.value.clone(),
                    line: start.line,
                    column: start.column,
                });
            }
        }
        previous_number = matches!(token.token, Token::Number(..));
        if previous_word_u && matches!(token.token, Token::Ampersand) {
            return Err(ParseError::UnicodeEscape {
                line: start.line,
                column: start.column,
            });
        }
        previous_word_u = matches!(&token.token, Token::Word(w)
            if w.quote_style.is_none() && w.value.eq_ignore_ascii_case("u"));
        match &token.token {
            Token::UnicodeStringLiteral(_) => {
                return Err(ParseError::UnicodeEscape {
                    line: start.line,
                    column: start.column,
                })
            }
            Token::LParen | Token::LBracket => {
                levels.push(0);
                depth += 1;
            }
            Token::Word(w) if w.quote_style.is_none() && w.keyword == Keyword::CASE => {
                levels.push(0);
                depth += 1;
            }
            Token::RParen | Token::RBracket => close(&mut levels, &mut depth),
            Token::Word(w) if w.quote_style.is_none() && w.keyword == Keyword::END => {
                close(&mut levels, &mut depth)
            }
            Token::Comma => reset(&mut levels, &mut depth),
            Token::Word(w) if w.quote_style.is_none() && ends_item(w.keyword) => {
                reset(&mut levels, &mut depth)
            }
            Token::Word(w) if w.quote_style.is_none() && is_operator_word(w.keyword) => {
                grow(&mut levels, &mut depth)
            }
            Token::Whitespace(Whitespace::Space | Whitespace::Newline | Whitespace::Tab)
            | Token::Whitespace(_)
            | Token::Word(_)
            | Token::Number(..)
            | Token::SingleQuotedString(_)
            | Token::DollarQuotedString(_)
            | Token::EscapedStringLiteral(_)
            | Token::SemiColon
            | Token::Period
            | Token::Placeholder(_) => {}
            _ => grow(&mut levels, &mut depth),
        }
        if depth > max_depth {
            return Err(ParseError::TooDeep {
                depth,
                max: max_depth,
                line: start.line,
                column: start.column,
            });
        }
    }
    Ok(())
}

fn close(levels: &mut Vec<usize>, depth: &mut usize) {
    if levels.len() > 1 {
        let top = levels.pop().unwrap_or(0);
        *depth = depth.saturating_sub(top + 1);
    }
}

fn grow(levels: &mut [usize], depth: &mut usize) {
    if let Some(top) = levels.last_mut() {
        *top += 1;
    }
    *depth += 1;
}

fn reset(levels: &mut [usize], depth: &mut usize) {
    if let Some(top) = levels.last_mut() {
        *depth = depth.saturating_sub(*top);
        *top = 0;
    }
}

fn ends_item(keyword: Keyword) -> bool {
    matches!(
        keyword,
        Keyword::SELECT
            | Keyword::FROM
            | Keyword::WHERE
            | Keyword::GROUP
            | Keyword::HAVING
            | Keyword::ORDER
            | Keyword::LIMIT
            | Keyword::OFFSET
            | Keyword::UNION
            | Keyword::INTERSECT
            | Keyword::EXCEPT
            | Keyword::WINDOW
            | Keyword::WHEN
            | Keyword::THEN
            | Keyword::ELSE
            | Keyword::JOIN
            | Keyword::ON
    )
}

fn is_operator_word(keyword: Keyword) -> bool {
    matches!(
        keyword,
        Keyword::AND
            | Keyword::OR
            | Keyword::NOT
            | Keyword::IS
            | Keyword::LIKE
            | Keyword::ILIKE
            | Keyword::SIMILAR
            | Keyword::BETWEEN
            | Keyword::IN
            | Keyword::COLLATE
            | Keyword::AT
    )
}
