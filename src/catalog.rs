//! What the database says the permission views look like: column names and types, and the
//! descriptions to show an agent. Read once at start-up, as the serving role (the views and
//! `pg_description` are readable by it; base tables are not needed).

use std::collections::BTreeMap;

use serde::Serialize;

use crate::policy::{Grouping, Policy};
use crate::rewrite::VIEW_SCHEMA;

#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct ColumnDesc {
    pub name: String,
    #[serde(rename = "type")]
    pub type_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TableDesc {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub columns: Vec<ColumnDesc>,
    /// The source's primary key, when all of it is visible and it makes rows unique: the
    /// column(s) an agent can join and group on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub primary_key: Option<Vec<String>>,
}

#[derive(Debug, Clone, Default)]
pub struct Catalog {
    pub tables: BTreeMap<String, TableDesc>,
    /// For the tables whose source has a primary key, all of it visible (see `complete`).
    pub keys: BTreeMap<String, Grouping>,
}

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("permission view {VIEW_SCHEMA}.{0} is missing or not readable: run `rowgate install`")]
    MissingView(String),
    #[error("cannot read the catalog: {0}")]
    Database(#[from] tokio_postgres::Error),
}

const COLUMNS: &str = "
SELECT a.attname::text,
       format_type(a.atttypid, a.atttypmod),
       col_description(src.oid, sa.attnum)
FROM pg_attribute a
LEFT JOIN pg_class src ON src.oid = to_regclass($2)
LEFT JOIN pg_attribute sa ON sa.attrelid = src.oid AND sa.attname = a.attname AND NOT sa.attisdropped
WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum";

/// The source's primary key columns in key order (none when it has no primary key). The
/// system catalogs are readable by the serving role; the source itself need not be. A plain
/// table with inheritance children gets none: a query reads the children too, and the
/// parent's key does not cover them (the same id may be in both).
const PRIMARY_KEY: &str = "
SELECT a.attname::text
FROM pg_index i
JOIN pg_class t ON t.oid = i.indrelid
CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
WHERE i.indrelid = to_regclass($1) AND i.indisprimary
  AND NOT (t.relkind = 'r' AND t.relhassubclass)
ORDER BY k.ord";

impl Catalog {
    pub async fn load(
        client: &tokio_postgres::Client,
        policy: &Policy,
    ) -> Result<Catalog, CatalogError> {
        let statement = client.prepare(COLUMNS).await?;
        let key_statement = client.prepare(PRIMARY_KEY).await?;
        let mut tables = BTreeMap::new();
        let mut keys = BTreeMap::new();
        for table in policy.tables.values() {
            let view = format!("{VIEW_SCHEMA}.{}", crate::sql::ident(&table.name));
            let source = table.source.to_string();
            let rows = client.query(&statement, &[&view, &source]).await?;
            if rows.is_empty() {
                return Err(CatalogError::MissingView(table.name.clone()));
            }
            let columns: Vec<ColumnDesc> = rows
                .iter()
                .map(|row| ColumnDesc {
                    name: row.get(0),
                    type_name: row.get(1),
                    description: row.get(2),
                })
                .collect();
            let key: Vec<String> = client
                .query(&key_statement, &[&source])
                .await?
                .iter()
                .map(|row| row.get(0))
                .collect();
            let visible: Vec<String> = columns.iter().map(|c| c.name.clone()).collect();
            let mut primary_key = None;
            if !key.is_empty() && key.iter().all(|k| visible.contains(k)) {
                let groupable = groupable(client, &view, &visible).await?;
                primary_key = Some(key.clone());
                keys.insert(table.name.clone(), Grouping { key, groupable });
            }
            tables.insert(
                table.name.clone(),
                TableDesc {
                    name: table.name.clone(),
                    description: table.description.clone(),
                    columns,
                    primary_key,
                },
            );
        }
        Ok(Catalog { tables, keys })
    }

    /// The policy with every table's column list made explicit, so permission CTEs name their
    /// columns (in view order) instead of `*`, and with each table's primary key when all of
    /// it is visible (a hidden key column cannot be grouped by anyway).
    pub fn complete(&self, policy: &Policy) -> Policy {
        let mut policy = policy.clone();
        for (name, table) in policy.tables.iter_mut() {
            if let Some(desc) = self.tables.get(name) {
                table.columns = Some(desc.columns.iter().map(|c| c.name.clone()).collect());
                table.grouping = self.keys.get(name).cloned();
            }
        }
        policy
    }

    /// Prompt-ready text for an agent's system prompt.
    pub fn to_text(&self) -> String {
        let mut out = String::from(
            "You can query these PostgreSQL tables with one read-only SELECT (rows are already limited to what the user may see):\n",
        );
        for table in self.tables.values() {
            out.push_str(&format!("\nTABLE {}", table.name));
            if let Some(description) = &table.description {
                out.push_str(&format!(" -- {description}"));
            }
            out.push('\n');
            for column in &table.columns {
                out.push_str(&format!("  {} {}", column.name, column.type_name));
                if let Some(description) = &column.description {
                    out.push_str(&format!(" -- {description}"));
                }
                out.push('\n');
            }
            if let Some(key) = &table.primary_key {
                out.push_str(&format!("  PRIMARY KEY ({})\n", key.join(", ")));
            }
        }
        out.push_str(WRITING_GUIDE);
        out
    }
}

/// How to write for PostgreSQL, from the mistakes models made most in the BIRD corpus
/// (CORPUS.md): each line names one that rowgate refuses or PostgreSQL rejects.
const WRITING_GUIDE: &str = "
Write PostgreSQL SQL:
- Send the query alone: no Markdown fences, no explanation, no backslash escapes.
- Quote a name that has spaces or capitals with double quotes (\"Free Meal Count\"), never back-ticks; strings take single quotes.
- Qualify every column with its table's alias when the query joins tables.
- Dates: EXTRACT(YEAR FROM d) or to_char(d, 'YYYY'), not year() or strftime(); d + INTERVAL '1 day'; e - d gives days.
- string_agg(x, ','), not group_concat; coalesce, not ifnull; CASE WHEN, not iif; a::numeric / b for a fraction.
- LIMIT n OFFSET m, not LIMIT m, n.
";

/// The view's columns that a GROUP BY can hold, asked of PostgreSQL: a type without equality
/// (json, a domain over it, a composite or array holding it, jsonpath, ...) fails parse
/// analysis, so preparing `SELECT 1 FROM view GROUP BY col` tells, whatever the type. One
/// statement for all columns first; one per column only when that fails.
async fn groupable(
    client: &tokio_postgres::Client,
    view: &str,
    columns: &[String],
) -> Result<Vec<String>, tokio_postgres::Error> {
    let group_by = |columns: &[String]| {
        let list: Vec<String> = columns
            .iter()
            .map(|c| crate::sql::ident(c).to_string())
            .collect();
        format!("SELECT 1 FROM {view} GROUP BY {}", list.join(", "))
    };
    if prepares(client, &group_by(columns)).await? {
        return Ok(columns.to_vec());
    }
    let mut out = Vec::new();
    for column in columns {
        if prepares(client, &group_by(std::slice::from_ref(column))).await? {
            out.push(column.clone());
        }
    }
    Ok(out)
}

/// Whether PostgreSQL accepts `sql`; an error that is not PostgreSQL's answer is returned.
async fn prepares(
    client: &tokio_postgres::Client,
    sql: &str,
) -> Result<bool, tokio_postgres::Error> {
    match client.prepare(sql).await {
        Ok(_) => Ok(true),
        Err(e) if e.as_db_error().is_some() => Ok(false),
        Err(e) => Err(e),
    }
}
