//! The compiled policy: who the caller is (subject attributes) and, per table the agent may
//! name, where its rows live, which rows and columns the caller sees, and how it is described.
//!
//! Policy files are trusted (written by the data owner) but checked hard at load time: every
//! SQL fragment is parsed now, every `:name` must be `:user_id` or a declared attribute, and a
//! mistake names its file and line. The rest of rowgate only ever sees a [`Policy`].

mod file;

use std::collections::{BTreeMap, BTreeSet};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use sqlparser::ast::{Expr, Query, Statement, Value, Visit, Visitor};
use sqlparser::parser::Parser;

pub use file::Origin;
use file::{LoadedFile, RawTable};

use crate::sql::{is_reserved, DIALECT};

/// The placeholder for the caller's id in every fragment.
pub const USER_ID: &str = "user_id";

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("cannot read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("no policy files (*.yaml) in {}", dir.display())]
    NoFiles { dir: PathBuf },
    #[error("{origin}: {message}")]
    Yaml { origin: Origin, message: String },
    #[error("{origin}: table `{table}` is already defined at {first}")]
    DuplicateTable {
        table: String,
        origin: Origin,
        first: Origin,
    },
    #[error("{origin}: attribute `{name}` is already defined at {first}")]
    DuplicateAttribute {
        name: String,
        origin: Origin,
        first: Origin,
    },
    #[error("{origin}: `subject.exists` is already defined at {first}")]
    DuplicateExists { origin: Origin, first: Origin },
    #[error("{origin}: {what}: {message}")]
    BadSql {
        origin: Origin,
        what: String,
        message: String,
    },
    #[error("{origin}: {what} uses `:{name}`, which is not `:user_id` nor a declared attribute ({declared})")]
    UnknownPlaceholder {
        origin: Origin,
        what: String,
        name: String,
        declared: String,
    },
    #[error("{origin}: table `{table}`: {message}")]
    BadTable {
        origin: Origin,
        table: String,
        message: String,
    },
    #[error("{origin}: function `{name}` cannot be allowed: {why}")]
    ForbiddenFunction {
        origin: Origin,
        name: String,
        why: &'static str,
    },
    #[error("{origin}: attribute name `{name}` is reserved")]
    ReservedAttribute { origin: Origin, name: String },
}

/// A parsed, checked SQL fragment, kept with the text its author wrote.
#[derive(Debug, Clone)]
pub struct Fragment<T> {
    pub text: String,
    pub ast: T,
}

#[derive(Debug, Clone, Default)]
pub struct Subject {
    /// A query that returns a row when the caller exists; `None` accepts any id.
    pub exists: Option<Fragment<Box<Query>>>,
    /// Attribute name → a query over `:user_id` returning the attribute's values.
    pub attributes: BTreeMap<String, Fragment<Box<Query>>>,
}

/// A schema-qualified relation name, folded as PostgreSQL would.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct QualifiedName {
    pub schema: String,
    pub name: String,
}

impl std::fmt::Display for QualifiedName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}.{}",
            crate::sql::ident(&self.schema),
            crate::sql::ident(&self.name)
        )
    }
}

#[derive(Debug, Clone)]
pub enum Rule {
    /// `rows:` a boolean expression over the source's columns.
    Rows(Box<Fragment<Expr>>),
    /// `view`/`column`/`match`: rows whose `column` is one of the attribute's values.
    Match { column: String, attribute: String },
}

impl Rule {
    /// The rule as its author would read it, for dry runs and `rowgate check`.
    pub fn describe(&self) -> String {
        match self {
            Rule::Rows(fragment) => fragment.text.clone(),
            Rule::Match { column, attribute } => format!("{column} IN (:{attribute})"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct TablePolicy {
    /// The name the agent uses (also the permission view's name in schema `rowgate`).
    pub name: String,
    pub source: QualifiedName,
    pub rule: Rule,
    /// The columns the caller may see, in table order; `None` means all of the source's.
    pub columns: Option<Vec<String>>,
    pub description: Option<String>,
    pub origin: Origin,
    /// What the database says about grouping by the source's primary key; filled from the
    /// catalog (`Catalog::complete`), `None` until then or when the source has no usable key.
    pub grouping: Option<Grouping>,
}

/// The source's primary key, all of it visible, and the visible columns that may join a
/// GROUP BY. PostgreSQL lets a query grouped by a base table's primary key use the table's
/// other columns; a permission view has no key, so the rewrite adds those columns to the
/// GROUP BY itself (see `rewrite::grouping`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grouping {
    pub key: Vec<String>,
    /// Visible columns in view order, minus those PostgreSQL cannot group by (a type without
    /// equality: json, a domain or composite holding it, jsonpath, point, ...).
    pub groupable: Vec<String>,
}

impl TablePolicy {
    pub fn allows_column(&self, column: &str) -> bool {
        self.columns
            .as_ref()
            .is_none_or(|cols| cols.iter().any(|c| c == column))
    }
}

#[derive(Debug, Clone, Default)]
pub struct Policy {
    pub subject: Subject,
    pub tables: BTreeMap<String, TablePolicy>,
    /// Functions the policy adds to the built-in allowlist (folded names).
    pub extra_functions: BTreeSet<String>,
    /// A hash of the files' contents: which policy a decision was made under.
    pub version: String,
    pub files: Vec<PathBuf>,
}

impl Policy {
    /// Loads and compiles every policy file in `dir`.
    pub fn load_dir(dir: &Path) -> Result<Policy, PolicyError> {
        compile(file::read_dir(dir)?)
    }

    /// Compiles policy text held in memory (tests, benchmarks); `name` stands for the file.
    pub fn from_yaml(name: &str, text: &str) -> Result<Policy, PolicyError> {
        let path = PathBuf::from(name);
        let raw = file::parse_text(text).map_err(|(line, message)| PolicyError::Yaml {
            origin: Origin {
                file: path.clone(),
                line,
            },
            message,
        })?;
        compile(vec![LoadedFile {
            path,
            text: text.to_string(),
            raw,
        }])
    }

    pub fn table(&self, name: &str) -> Option<&TablePolicy> {
        self.tables.get(name)
    }

    /// The table names, for hints such as "tables you may use: …".
    pub fn table_list(&self) -> String {
        self.tables.keys().cloned().collect::<Vec<_>>().join(", ")
    }
}

fn compile(files: Vec<LoadedFile>) -> Result<Policy, PolicyError> {
    let mut hasher = Sha256::new();
    let mut policy = Policy::default();
    let mut exists_origin: Option<Origin> = None;
    let mut attribute_origins: BTreeMap<String, Origin> = BTreeMap::new();
    let mut attribute_texts: Vec<(String, String, Origin)> = Vec::new();

    // First pass: attribute names, since every fragment is checked against them.
    for loaded in &files {
        hasher.update(
            loaded
                .path
                .file_name()
                .map(|n| n.as_encoded_bytes())
                .unwrap_or_default(),
        );
        hasher.update([0]);
        hasher.update(loaded.text.as_bytes());
        hasher.update([0]);
        let Some(subject) = &loaded.raw.subject else {
            continue;
        };
        if let Some(text) = &subject.exists {
            let origin = loaded.origin_of("subject", "exists");
            if let Some(first) = exists_origin.take() {
                return Err(PolicyError::DuplicateExists { origin, first });
            }
            exists_origin = Some(origin.clone());
            attribute_texts.push((String::new(), text.clone(), origin));
        }
        for (name, text) in &subject.attributes {
            let origin = loaded.origin_of("attributes", name);
            if name == USER_ID || !is_plain_name(name) || is_reserved(name) {
                return Err(PolicyError::ReservedAttribute {
                    origin,
                    name: name.clone(),
                });
            }
            if let Some(first) = attribute_origins.get(name) {
                return Err(PolicyError::DuplicateAttribute {
                    name: name.clone(),
                    origin,
                    first: first.clone(),
                });
            }
            attribute_origins.insert(name.clone(), origin.clone());
            attribute_texts.push((name.clone(), text.clone(), origin));
        }
    }
    let declared: BTreeSet<String> = attribute_origins.keys().cloned().collect();

    for (name, text, origin) in attribute_texts {
        // Attribute queries know only the caller's id; they cannot use each other.
        let what = if name.is_empty() {
            "subject.exists".to_string()
        } else {
            format!("attribute `{name}`")
        };
        let query = parse_query(&text, &origin, &what)?;
        check_placeholders(&*query, &BTreeSet::new(), &origin, &what)?;
        let fragment = Fragment { text, ast: query };
        if name.is_empty() {
            policy.subject.exists = Some(fragment);
        } else {
            policy.subject.attributes.insert(name, fragment);
        }
    }

    for loaded in &files {
        for (name, raw) in &loaded.raw.tables {
            let origin = loaded.origin_of("tables", name);
            if let Some(first) = policy.tables.get(name) {
                return Err(PolicyError::DuplicateTable {
                    table: name.clone(),
                    origin,
                    first: first.origin.clone(),
                });
            }
            let table = compile_table(name, raw, origin, &declared)?;
            policy.tables.insert(name.clone(), table);
        }
        for function in &loaded.raw.functions {
            let origin = loaded.origin_of("functions", function);
            let folded = function.to_lowercase();
            if let Some(why) = crate::guard::never_allowed(&folded) {
                return Err(PolicyError::ForbiddenFunction {
                    origin,
                    name: folded,
                    why,
                });
            }
            policy.extra_functions.insert(folded);
        }
    }
    policy.version = hex(&hasher.finalize()[..8]);
    policy.files = files.into_iter().map(|f| f.path).collect();
    Ok(policy)
}

fn compile_table(
    name: &str,
    raw: &RawTable,
    origin: Origin,
    declared: &BTreeSet<String>,
) -> Result<TablePolicy, PolicyError> {
    let bad = |message: String| PolicyError::BadTable {
        origin: origin.clone(),
        table: name.to_string(),
        message,
    };
    if !is_plain_name(name) {
        return Err(bad(
            "table names must be lower-case identifiers (letters, digits, _)".into(),
        ));
    }
    if name.len() > MAX_TABLE_NAME_BYTES {
        return Err(bad(format!(
            "table names may be at most {MAX_TABLE_NAME_BYTES} bytes: PostgreSQL keeps 63 bytes \
             of a name, and the rewritten query names this table's permission CTE `rg_{name}`"
        )));
    }
    let (source_text, rule) =
        match (&raw.rows, &raw.view, &raw.column, &raw.match_attribute) {
            (Some(rows), None, None, None) => {
                let what = format!("table `{name}` rows");
                let expr = parse_expr(rows, &origin, &what)?;
                check_placeholders(&expr, declared, &origin, &what)?;
                let source = raw.source.clone().unwrap_or_else(|| name.to_string());
                (
                    source,
                    Rule::Rows(Box::new(Fragment {
                        text: rows.clone(),
                        ast: expr,
                    })),
                )
            }
            (None, Some(view), Some(column), Some(attribute)) => {
                if raw.source.is_some() {
                    return Err(bad("give either `source` or `view`, not both".into()));
                }
                if !declared.contains(attribute) {
                    return Err(PolicyError::UnknownPlaceholder {
                        origin,
                        what: format!("table `{name}` match"),
                        name: attribute.clone(),
                        declared: declared_list(declared),
                    });
                }
                let column = fold_word(column)
                    .ok_or_else(|| bad(format!("`column: {column}` is not a column name")))?;
                (
                    view.clone(),
                    Rule::Match {
                        column,
                        attribute: attribute.clone(),
                    },
                )
            }
            _ => return Err(bad(
                "give either `rows` (an expression) or all three of `view`, `column` and `match`"
                    .into(),
            )),
        };
    let source = parse_relation(&source_text).ok_or_else(|| {
        bad(format!(
            "`{source_text}` is not a table name (write schema.table or table)"
        ))
    })?;
    let columns = match &raw.columns {
        None => None,
        Some(list) if list.is_empty() => return Err(bad("`columns` is empty".into())),
        Some(list) => {
            let mut seen = BTreeSet::new();
            let mut folded = Vec::new();
            for column in list {
                let c = fold_word(column)
                    .ok_or_else(|| bad(format!("`{column}` is not a column name")))?;
                if !seen.insert(c.clone()) {
                    return Err(bad(format!("column `{c}` is listed twice")));
                }
                folded.push(c);
            }
            Some(folded)
        }
    };
    Ok(TablePolicy {
        name: name.to_string(),
        source,
        rule,
        columns,
        description: raw.description.clone(),
        origin,
        grouping: None,
    })
}

/// The longest policy table name: its permission CTE, `rg_<table>`, must fit in the 63 bytes
/// of a name PostgreSQL keeps, or it would be cut to a name the agent's query may have taken.
pub const MAX_TABLE_NAME_BYTES: usize = 60;

fn is_plain_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// A column name as written in YAML: folded like an unquoted identifier unless it is quoted.
fn fold_word(word: &str) -> Option<String> {
    let ident = Parser::new(&DIALECT)
        .try_with_sql(word)
        .ok()?
        .parse_identifier()
        .ok()?;
    (ident.to_string().len() == word.trim().len()).then(|| crate::sql::fold(&ident))
}

fn parse_relation(text: &str) -> Option<QualifiedName> {
    let name = Parser::new(&DIALECT)
        .try_with_sql(text)
        .ok()?
        .parse_object_name(false)
        .ok()?;
    match crate::sql::fold_name(&name)?.as_slice() {
        [table] => Some(QualifiedName {
            schema: "public".into(),
            name: table.clone(),
        }),
        [schema, table] => Some(QualifiedName {
            schema: schema.clone(),
            name: table.clone(),
        }),
        _ => None,
    }
}

fn parse_expr(text: &str, origin: &Origin, what: &str) -> Result<Expr, PolicyError> {
    let bad = |message: String| PolicyError::BadSql {
        origin: origin.clone(),
        what: what.to_string(),
        message,
    };
    let mut parser = Parser::new(&DIALECT)
        .try_with_sql(text)
        .map_err(|e| bad(e.to_string()))?;
    let expr = parser.parse_expr().map_err(|e| bad(e.to_string()))?;
    if parser.peek_token().token != sqlparser::tokenizer::Token::EOF {
        return Err(bad(format!(
            "unexpected text after the expression: {}",
            parser.peek_token()
        )));
    }
    Ok(expr)
}

fn parse_query(text: &str, origin: &Origin, what: &str) -> Result<Box<Query>, PolicyError> {
    let bad = |message: String| PolicyError::BadSql {
        origin: origin.clone(),
        what: what.to_string(),
        message,
    };
    let statements = Parser::parse_sql(&DIALECT, text).map_err(|e| bad(e.to_string()))?;
    match <[Statement; 1]>::try_from(statements) {
        Ok([Statement::Query(query)]) => Ok(query),
        _ => Err(bad("must be exactly one SELECT query".into())),
    }
}

struct Placeholders<'a> {
    declared: &'a BTreeSet<String>,
    unknown: Option<String>,
}

impl Visitor for Placeholders<'_> {
    type Break = ();
    fn pre_visit_value(&mut self, value: &sqlparser::ast::ValueWithSpan) -> ControlFlow<()> {
        if let Value::Placeholder(p) = &value.value {
            let name = p.trim_start_matches(':');
            if !p.starts_with(':') || (name != USER_ID && !self.declared.contains(name)) {
                self.unknown = Some(name.to_string());
                return ControlFlow::Break(());
            }
        }
        ControlFlow::Continue(())
    }
}

fn check_placeholders<V: Visit>(
    ast: &V,
    declared: &BTreeSet<String>,
    origin: &Origin,
    what: &str,
) -> Result<(), PolicyError> {
    let mut visitor = Placeholders {
        declared,
        unknown: None,
    };
    let _ = ast.visit(&mut visitor);
    match visitor.unknown {
        None => Ok(()),
        Some(name) => Err(PolicyError::UnknownPlaceholder {
            origin: origin.clone(),
            what: what.to_string(),
            name,
            declared: declared_list(declared),
        }),
    }
}

fn declared_list(declared: &BTreeSet<String>) -> String {
    if declared.is_empty() {
        "no attributes are declared".into()
    } else {
        format!(
            "declared: {}",
            declared.iter().cloned().collect::<Vec<_>>().join(", ")
        )
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
