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
use sqlparser::tokenizer::{Token, TokenWithSpan, Tokenizer};

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
    /// The parser's own recursion limit, which knows no position.
    #[error("the SQL nests more than {max} levels deep")]
    TooDeepToParse { max: usize },
    #[error("U& Unicode-escape syntax at line {line}, column {column} is not accepted")]
    UnicodeEscape { line: u64, column: u64 },
    #[error("a number runs into the word `{word}` at line {line}, column {column}")]
    NumberRunsIntoWord {
        word: String,
        line: u64,
        column: u64,
    },
    #[error("the SQL holds a NUL character (U+0000) at line {line}, column {column}")]
    Nul { line: u64, column: u64 },
    #[error("the SQL does not parse: {message}")]
    Syntax { message: String, hint: &'static str },
}

impl Refusal for ParseError {
    fn code(&self) -> ErrorCode {
        match self {
            ParseError::TooLarge { .. } | ParseError::Nul { .. } => ErrorCode::InvalidRequest,
            _ => ErrorCode::ParseError,
        }
    }

    fn hint(&self) -> String {
        match self {
            ParseError::TooLarge { .. } => {
                "Send a shorter query: select fewer columns or split the question.".into()
            }
            ParseError::Empty => "Send one SELECT query.".into(),
            ParseError::TooDeep { .. } | ParseError::TooDeepToParse { .. } => {
                "Flatten the query: fewer nested parentheses or subqueries; use a CTE (WITH) or IN (...) instead of long chains.".into()
            }
            ParseError::UnicodeEscape { .. } => {
                "Write identifiers and strings plainly (\"name\", 'text'), without U&.".into()
            }
            ParseError::NumberRunsIntoWord { .. } => {
                "Write numbers in decimal (no 0x, 0b or 0o prefix) and put a space between a number and a name.".into()
            }
            ParseError::Nul { .. } => {
                "Remove the NUL character: PostgreSQL text cannot hold it, in a literal or anywhere else.".into()
            }
            ParseError::Syntax { hint, .. } => (*hint).into(),
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
    // PostgreSQL's protocol cannot carry it: refused here rather than failing the connection.
    if let Some(at) = sql.find('\0') {
        let before = &sql[..at];
        return Err(ParseError::Nul {
            line: before.matches('\n').count() as u64 + 1,
            column: before.rsplit('\n').next().map_or(0, |l| l.chars().count()) as u64 + 1,
        });
    }
    let tokens = Tokenizer::new(&DIALECT, sql)
        .tokenize_with_location()
        .map_err(|e| syntax(sql, e.to_string()))?;
    check_tokens(&tokens, limits.max_depth)?;
    let tokens = table_as_select(tokens);
    let statements = Parser::new(&DIALECT)
        .with_recursion_limit(limits.max_depth)
        .with_tokens_with_locations(tokens)
        .parse_statements()
        .map_err(|e| match e {
            sqlparser::parser::ParserError::RecursionLimitExceeded => ParseError::TooDeepToParse {
                max: limits.max_depth,
            },
            other => syntax(sql, other.to_string()),
        })?;
    if statements.is_empty() {
        return Err(ParseError::Empty);
    }
    Ok(statements)
}

fn syntax(sql: &str, message: String) -> ParseError {
    let hint = syntax_hint(sql, &message);
    ParseError::Syntax { message, hint }
}

/// What models get wrong most when their SQL does not parse (425 of the BIRD predictions'
/// refusals, CORPUS.md), recognized from the text in this order; otherwise a general hint.
/// The parser's message, which has the position, is kept as it is.
fn syntax_hint(sql: &str, message: &str) -> &'static str {
    let text = sql.trim_start();
    if text.contains("```") {
        "Send the SQL alone: no Markdown fences (```) and no explanation around it."
    } else if !starts_like_sql(text) {
        "Send only the SQL query, starting with SELECT or WITH, with no explanation before it."
    } else if text.contains('`') {
        "Back-ticks are MySQL's: quote names with double quotes (\"name\") or leave them unquoted."
    } else if text.contains("\\_") || text.contains("\\*") {
        "Remove the backslashes: `\\_` and `\\*` are Markdown escapes; in SQL write `_` and `*`."
    } else if text.contains("\\'") || text.contains("\\\"") {
        "Send the SQL unescaped: a backslash does not escape a quote in PostgreSQL. Inside a string, double the single quote: 'it''s'."
    } else if message.contains("Unterminated string literal") {
        "Close every string with a single quote; inside a string, double the single quote: 'it''s'."
    } else if limit_with_comma(text) {
        "Write LIMIT count OFFSET skip: PostgreSQL has no LIMIT skip, count."
    } else {
        "Fix the syntax at the position given; write one PostgreSQL SELECT query. A name with spaces or symbols needs double quotes: \"Free Meal Count (K-12)\"."
    }
}

/// Whether the text opens as SQL does: a keyword, a parenthesis or a comment. Prose ("Here is
/// the query:") opens with a word that is not a keyword.
fn starts_like_sql(text: &str) -> bool {
    let word: String = text
        .chars()
        .take_while(char::is_ascii_alphabetic)
        .collect::<String>()
        .to_ascii_uppercase();
    text.starts_with(['(', '-', '/'])
        || sqlparser::keywords::ALL_KEYWORDS
            .binary_search(&word.as_str())
            .is_ok()
}

/// `LIMIT 5, 10`: MySQL's offset-then-count.
fn limit_with_comma(text: &str) -> bool {
    let lower = text.to_ascii_lowercase();
    lower.match_indices("limit").any(|(at, word)| {
        let rest = lower[at + word.len()..].trim_start();
        let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        digits > 0 && rest[digits..].trim_start().starts_with(',')
    })
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
/// `TABLE name` is PostgreSQL's short form of `SELECT * FROM name`, and agents write it;
/// sqlparser does not read it, so the tokens are spelled out where a query may start (the
/// beginning, after `(`, after a WITH list's `)`, after UNION, INTERSECT or EXCEPT [ALL |
/// DISTINCT]). Anywhere else `TABLE` makes no valid SQL, and `SELECT * FROM name` is checked
/// like any query. The new tokens take
/// `TABLE`'s position, so the SELECT is the agent's like any other.
fn table_as_select(tokens: Vec<TokenWithSpan>) -> Vec<TokenWithSpan> {
    let mut out: Vec<TokenWithSpan> = Vec::with_capacity(tokens.len());
    for token in tokens {
        let is_table = matches!(&token.token,
            Token::Word(w) if w.keyword == Keyword::TABLE && w.quote_style.is_none());
        let previous = out
            .iter()
            .rev()
            .find(|t| !matches!(t.token, Token::Whitespace(_)))
            .map(|t| &t.token);
        let query_starts = match previous {
            None | Some(Token::LParen | Token::RParen) => true,
            Some(Token::Word(w)) => {
                matches!(
                    w.keyword,
                    Keyword::UNION
                        | Keyword::INTERSECT
                        | Keyword::EXCEPT
                        | Keyword::ALL
                        | Keyword::DISTINCT
                ) && w.quote_style.is_none()
            }
            _ => false,
        };
        if !(is_table && query_starts) {
            out.push(token);
            continue;
        }
        let span = token.span;
        for token in [
            Token::make_keyword("SELECT"),
            Token::Whitespace(sqlparser::tokenizer::Whitespace::Space),
            Token::Mul,
            Token::Whitespace(sqlparser::tokenizer::Whitespace::Space),
            Token::make_keyword("FROM"),
        ] {
            out.push(TokenWithSpan::new(token, span));
        }
    }
    out
}

fn check_tokens(tokens: &[TokenWithSpan], max_depth: usize) -> Result<(), ParseError> {
    let mut nesting = Nesting::default();
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
        let keyword = match &token.token {
            Token::Word(w) if w.quote_style.is_none() => w.keyword,
            _ => Keyword::NoKeyword,
        };
        match &token.token {
            Token::UnicodeStringLiteral(_) => {
                return Err(ParseError::UnicodeEscape {
                    line: start.line,
                    column: start.column,
                })
            }
            Token::LParen => nesting.open(Opener::Paren),
            Token::LBracket => nesting.open(Opener::Bracket),
            Token::Word(_) if keyword == Keyword::CASE => nesting.open(Opener::Case),
            Token::RParen => nesting.close(Opener::Paren),
            Token::RBracket => nesting.close(Opener::Bracket),
            Token::Word(_) if keyword == Keyword::END => nesting.close(Opener::Case),
            Token::Comma => nesting.end_item(),
            Token::Word(_) if is_set_operation(keyword) => nesting.set_operation(),
            Token::Word(_) if ends_item(keyword) => nesting.end_item(),
            Token::Word(_) if is_operator_word(keyword) => nesting.operator(),
            Token::Whitespace(_)
            | Token::Word(_)
            | Token::Number(..)
            | Token::SingleQuotedString(_)
            | Token::DollarQuotedString(_)
            | Token::EscapedStringLiteral(_)
            | Token::SemiColon
            | Token::Period
            | Token::Placeholder(_) => {}
            // Every other token is an operator or punctuation, `::` included. (`a.b.c` is one
            // flat name to sqlparser, so `.` costs nothing.)
            _ => nesting.operator(),
        }
        if nesting.depth > max_depth {
            return Err(ParseError::TooDeep {
                depth: nesting.depth,
                max: max_depth,
                line: start.line,
                column: start.column,
            });
        }
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Opener {
    Top,
    Paren,
    Bracket,
    Case,
}

/// One open parenthesis, bracket or CASE, with what has been chained inside it so far.
#[derive(Debug)]
struct Level {
    opener: Opener,
    /// Operators in the current item (reset by a comma or a clause keyword).
    operators: usize,
    /// Set operations at this level (a UNION chain is a tree as deep as it is long; clause
    /// keywords do not reset it).
    set_operations: usize,
}

/// An upper bound of the depth of the tree the parser will build. It can only over-count: a
/// closing token that does not match the innermost opener is ignored, so stray `)` or `END`
/// cannot hide what comes after them.
#[derive(Debug)]
struct Nesting {
    levels: Vec<Level>,
    depth: usize,
}

impl Default for Nesting {
    fn default() -> Self {
        Nesting {
            levels: vec![Level {
                opener: Opener::Top,
                operators: 0,
                set_operations: 0,
            }],
            depth: 1,
        }
    }
}

impl Nesting {
    fn open(&mut self, opener: Opener) {
        self.levels.push(Level {
            opener,
            operators: 0,
            set_operations: 0,
        });
        self.depth += 1;
    }

    fn close(&mut self, opener: Opener) {
        if self.levels.len() > 1 && self.levels.last().map(|l| l.opener) == Some(opener) {
            if let Some(level) = self.levels.pop() {
                self.depth = self
                    .depth
                    .saturating_sub(1 + level.operators + level.set_operations);
            }
        }
    }

    fn operator(&mut self) {
        if let Some(level) = self.levels.last_mut() {
            level.operators += 1;
            self.depth += 1;
        }
    }

    fn end_item(&mut self) {
        if let Some(level) = self.levels.last_mut() {
            self.depth = self.depth.saturating_sub(level.operators);
            level.operators = 0;
        }
    }

    fn set_operation(&mut self) {
        self.end_item();
        if let Some(level) = self.levels.last_mut() {
            level.set_operations += 1;
            self.depth += 1;
        }
    }
}

fn is_set_operation(keyword: Keyword) -> bool {
    matches!(
        keyword,
        Keyword::UNION | Keyword::INTERSECT | Keyword::EXCEPT | Keyword::MINUS
    )
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
            | Keyword::XOR
            | Keyword::OVERLAPS
            | Keyword::NOTNULL
            | Keyword::REGEXP
            | Keyword::RLIKE
            | Keyword::GLOB
            | Keyword::MATCH
            | Keyword::MEMBER
            | Keyword::OPERATOR
            | Keyword::DIV
            | Keyword::ESCAPE
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn depth_error(sql: &str) -> bool {
        matches!(
            parse(sql, &Limits::default()),
            Err(ParseError::TooDeep { .. })
        )
    }

    fn hint_of(sql: &str) -> String {
        match parse(sql, &Limits::default()) {
            Err(e @ ParseError::Syntax { .. }) => e.hint(),
            other => panic!("{sql}: not a syntax error: {other:?}"),
        }
    }

    #[test]
    fn syntax_errors_models_make_get_their_own_hint() {
        for (sql, hint) in [
            ("```sql\nSELECT 1\n```", "Markdown fences"),
            ("Here is the query: SELECT 1", "no explanation before it"),
            ("SELECT `name` FROM customers", "double quotes"),
            ("SELECT 1 FROM t WHERE a = \\'x\\'", "unescaped"),
            ("SELECT COUNT(\\*) AS num\\_rows FROM t", "Markdown escapes"),
            ("SELECT 'abc FROM customers", "Close every string"),
            (
                "SELECT name FROM customers LIMIT 5, 10",
                "LIMIT count OFFSET skip",
            ),
            ("SELECT name FROM customers WHERE", "at the position given"),
            ("EXPLAIN ANALYSE SELECT (", "at the position given"),
            ("-- a comment\nSELECT (", "at the position given"),
        ] {
            let got = hint_of(sql);
            assert!(got.contains(hint), "{sql}: {got}");
        }
    }

    #[test]
    fn stray_closers_do_not_hide_depth() {
        let chain = |n: usize| format!("1{}", " + 1".repeat(n));
        // Before: `END` or `]` closed the open parenthesis, so the second half was counted
        // from the top level again.
        assert!(depth_error(&format!(
            "SELECT ({} END {})",
            chain(150),
            chain(150)
        )));
        assert!(depth_error(&format!(
            "SELECT ({} ] {})",
            chain(150),
            chain(150)
        )));
        assert!(!depth_error(&format!(
            "SELECT ({}) + ({})",
            chain(150),
            chain(150)
        )));
    }

    #[test]
    fn set_operations_count_as_depth_but_clauses_do_not_reset_them() {
        assert!(depth_error(&format!(
            "SELECT 1{}",
            " UNION SELECT 1".repeat(250)
        )));
        assert!(!depth_error(&format!(
            "SELECT 1{}",
            " UNION SELECT 1".repeat(150)
        )));
        // Inside parentheses they are counted at that level and released at `)`.
        let branch = format!("(SELECT 1{})", " UNION SELECT 1".repeat(100));
        assert!(!depth_error(&format!("{branch} UNION {branch}")));
    }
}
