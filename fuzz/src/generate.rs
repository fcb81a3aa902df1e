//! A structure-aware SQL generator: turns fuzzer bytes into a query that mostly parses, so that
//! the fuzzer spends its time in guard, resolve and rewrite rather than in syntax errors.
//!
//! The grammar is PostgreSQL SELECTs over the demo tables (and tables outside the policy), with
//! joins, CTEs (named like tables too), subqueries in every clause, set operations, functions
//! from the allowlist and from the denylist, casts to allowed and catalog types, and the lexical
//! tricks that have fooled SQL filters: quoted and case-folded names, Unicode look-alikes,
//! comments between tokens, dollar quotes, escape strings, numbers glued to words, and stray
//! statements after a `;`. A few leaves copy raw text from the input, so mutations can still
//! reach anything.
//!
//! Every choice reads from `Unstructured`; when the bytes run out every choice takes its first
//! option, which is always a leaf, so generation ends on any input.

use arbitrary::{Result, Unstructured};

/// Beyond this depth only leaves are generated (the parse caps are fuzzed by the raw target).
const MAX_DEPTH: u32 = 5;

pub fn sql(u: &mut Unstructured<'_>) -> Result<String> {
    let mut g = Gen {
        u,
        out: String::new(),
    };
    g.statement()?;
    Ok(g.out)
}

struct Gen<'a, 'b> {
    u: &'b mut Unstructured<'a>,
    out: String,
}

const TABLES: &[&str] = &[
    "invoices",
    "customers",
    "transactions",
    "orders",
    "order_items",
    "folders",
    "documents",
    "blocks",
    "items",
];

/// Ways to write a table name: the policy's tables in every spelling, tables outside the policy,
/// the permission views themselves, and look-alikes that must not be taken for a policy table.
const TABLE_SPELLINGS: &[&str] = &[
    "public.invoices",
    "\"invoices\"",
    "\"Invoices\"",
    "INVOICES",
    "public.\"customers\"",
    "\"public\".\"orders\"",
    "PUBLIC.Orders",
    "permissions",
    "app_users",
    "user_roles",
    "folder_access",
    "item_users",
    "public.permissions",
    "rowgate.invoices",
    "rowgate.customers",
    "\"rowgate\".\"invoices\"",
    "rg_invoices",
    "rg_customers",
    "pg_catalog.pg_user",
    "pg_catalog.pg_authid",
    "pg_shadow",
    "pg_roles",
    "information_schema.tables",
    "mydb.public.invoices",
    "bloc\u{212A}s",
    "invo\u{0131}ces",
    "\"invoices \"",
    "\"invoices\u{200B}\"",
    "\u{FF49}nvoices",
    "ONLY invoices",
    "invoices *",
    "x",
    "y",
];

/// Columns of the demo tables, including `email` (hidden by the policy of customers) and names
/// that are also table names.
const COLUMNS: &[&str] = &[
    "id",
    "amount",
    "department",
    "customer_id",
    "issued_on",
    "name",
    "email",
    "active",
    "created_at",
    "invoice_id",
    "happened_at",
    "user_id",
    "total",
    "placed_at",
    "status",
    "metadata",
    "order_id",
    "product",
    "quantity",
    "unit_price",
    "folder_id",
    "uid",
    "title",
    "document_id",
    "content",
    "embedding",
    "tenant_id",
    "tags",
    "archived",
    "\"email\"",
    "EMAIL",
    "\"Email\"",
    "invoices",
    "customers",
    "xmin",
    "ctid",
    "tableoid",
    "oid",
    "n",
    "a",
];

const ALIASES: &[&str] = &[
    "t",
    "i",
    "c",
    "x",
    "s",
    "invoices",
    "customers",
    "rg_invoices",
    "\"T\"",
    "T",
    "rowgate",
    "public",
    "pg_catalog",
    "permissions",
];

const CTE_NAMES: &[&str] = &[
    "x",
    "y",
    "invoices",
    "customers",
    "rg_invoices",
    "rg_customers",
    "\"invoices\"",
    "\"Invoices\"",
    "INVOICES",
    "bloc\u{212A}s",
    "orders",
    "permissions",
    "rowgate",
];

/// Allowed functions (some schema-qualified or quoted), then denied ones in as many spellings.
const FUNCTIONS: &[&str] = &[
    "count",
    "sum",
    "avg",
    "min",
    "max",
    "lower",
    "upper",
    "coalesce",
    "round",
    "date_trunc",
    "extract",
    "concat",
    "format",
    "string_agg",
    "array_agg",
    "json_agg",
    "jsonb_build_object",
    "row_number",
    "rank",
    "lag",
    "now",
    "greatest",
    "length",
    "substring",
    "generate_series",
    "unnest",
    "jsonb_array_elements",
    "make_interval",
    "pg_catalog.count",
    "PG_CATALOG.lower",
    "\"lower\"",
    "\"LOWER\"",
    "COUNT",
    "pg_sleep",
    "PG_SLEEP",
    "\"pg_sleep\"",
    "pg_catalog.pg_sleep",
    "pg_sleep_for",
    "set_config",
    "pg_catalog.set_config",
    "current_setting",
    "query_to_xml",
    "table_to_xml",
    "dblink",
    "public.dblink",
    "lo_import",
    "pg_read_file",
    "pg_ls_dir",
    "nextval",
    "txid_current",
    "xpath",
    "version",
    "to_regclass",
    "has_table_privilege",
    "pg_get_viewdef",
    "row_to_json",
    "to_json",
    "public.count",
    "rowgate.f",
    "invoices",
    "pg_catalog.\"pg_sleep\"",
    "pg_s\u{212A}eep",
];

const TYPES: &[&str] = &[
    "int",
    "text",
    "numeric",
    "date",
    "timestamptz",
    "jsonb",
    "boolean",
    "text[]",
    "vector",
    "\"char\"",
    "varchar(3)",
    "interval",
    "regclass",
    "regproc",
    "oid",
    "pg_catalog.regclass",
    "REGCLASS",
    "\"regclass\"",
    "record",
    "customers",
    "invoices",
    "tid",
    "xid",
    "name",
    "pg_catalog.text",
];

const BINARY_OPERATORS: &[&str] = &[
    "+",
    "-",
    "*",
    "/",
    "%",
    "||",
    "=",
    "<>",
    "!=",
    "<",
    ">",
    "<=",
    ">=",
    "AND",
    "OR",
    "LIKE",
    "ILIKE",
    "NOT LIKE",
    "~",
    "!~",
    "~*",
    "@>",
    "<@",
    "->",
    "->>",
    "#>",
    "#>>",
    "?",
    "<->",
    "<=>",
    "&&",
    "^",
    "|",
    "&",
    "#",
    "<<",
    ">>",
    "IS DISTINCT FROM",
    "SIMILAR TO",
    ":=",
    "OPERATOR(pg_catalog.+)",
];

const UNARY_OPERATORS: &[&str] = &["-", "+", "NOT ", "~", "@", "|/", "- ", "-", "!!"];

/// Literals, including every quoting form PostgreSQL has and sqlparser may read differently.
const LITERALS: &[&str] = &[
    "1",
    "0",
    "-1",
    "1.5",
    ".5",
    "1e3",
    "1E-2",
    "0x1F",
    "0b101",
    "0o17",
    "1_000",
    "123abc",
    "'a'",
    "''",
    "'it''s'",
    "'--'",
    "'/*'",
    "E'\\''",
    "E'\\x41\\\\'",
    "e'a\\nb'",
    "$$x$$",
    "$$ ' -- /* $$",
    "$q$ $$ ' $q$",
    "$a$b$c$a$",
    "$1",
    ":user_id",
    "?",
    "U&'\\0041'",
    "U&\"\\0041\"",
    "B'101'",
    "X'FF'",
    "N'x'",
    "NULL",
    "TRUE",
    "false",
    "DEFAULT",
    "'{1,2}'",
    "'[0.1, 0.2, 0.3, 0.4]'",
    "'{\"a\": 1}'::jsonb",
    "INTERVAL '1 day'",
    "DATE '2024-01-01'",
    "regclass 'invoices'",
    "CURRENT_DATE",
    "CURRENT_USER",
    "SESSION_USER",
    "current_timestamp",
    "'\u{00e9}\u{0301}'",
    "'\u{0000}'",
    "'\u{FEFF}'",
];

/// What may stand between two tokens: mostly a space, sometimes a comment, a line break or a
/// character PostgreSQL does not treat as white space.
const SEPARATORS: &[&str] = &[
    "\n",
    "\t",
    "/**/",
    "/* c */",
    "/* /* nested */ */",
    "-- c\n",
    "--\n",
    "\r\n",
    "\u{000C}",
    "\u{00A0}",
    "\u{3000}",
    "\u{200B}",
    "",
    "  ",
];

const TAILS: &[&str] = &[
    ";",
    "; SELECT 2",
    ";;",
    "; DROP TABLE invoices",
    " -- trailing",
    " /* open",
    ")",
    " FOR UPDATE",
    " FOR SHARE OF invoices",
    " INTO t",
    "\u{0000}",
];

/// Statements that are not queries, and queries hiding one.
const OTHER_STATEMENTS: &[&str] = &[
    "EXPLAIN ",
    "EXPLAIN ANALYZE ",
    "DELETE FROM invoices WHERE ",
    "UPDATE invoices SET amount = 0 WHERE ",
    "INSERT INTO invoices SELECT * FROM invoices WHERE ",
    "WITH d AS (DELETE FROM invoices RETURNING *) SELECT * FROM d WHERE ",
    "COPY invoices TO STDOUT; SELECT ",
    "SET role postgres; SELECT ",
    "TABLE invoices UNION SELECT * FROM invoices WHERE ",
    "DECLARE c CURSOR FOR SELECT ",
    "PREPARE p AS SELECT ",
    "DO $$ BEGIN PERFORM 1; END $$; SELECT ",
    "SHOW search_path; SELECT ",
    "CREATE TABLE t AS SELECT ",
    "SELECT * INTO t FROM invoices WHERE ",
];

impl Gen<'_, '_> {
    fn w(&mut self, s: &str) {
        self.out.push_str(s);
    }

    /// True with probability `a / b`; false once the bytes run out (`Unstructured::ratio` is
    /// true then, which would make every optional clause appear in every exhausted input).
    fn chance(&mut self, a: u8, b: u8) -> Result<bool> {
        Ok(self.u.int_in_range(1..=b)? > b - a)
    }

    /// A separator between tokens: a space unless the byte says otherwise.
    fn sp(&mut self) -> Result<()> {
        if self.chance(1, 12)? {
            let s = *self.u.choose(SEPARATORS)?;
            self.w(s);
        } else {
            self.w(" ");
        }
        Ok(())
    }

    /// A keyword, sometimes in lower or mixed case.
    fn kw(&mut self, k: &str) -> Result<()> {
        match self.u.int_in_range(0u8..=15)? {
            0..=12 => self.w(k),
            13 => self.out.push_str(&k.to_lowercase()),
            _ => {
                let mixed: String = k
                    .chars()
                    .enumerate()
                    .map(|(i, c)| {
                        if i % 2 == 0 {
                            c.to_ascii_lowercase()
                        } else {
                            c
                        }
                    })
                    .collect();
                self.w(&mixed);
            }
        }
        Ok(())
    }

    fn pick(&mut self, options: &[&str]) -> Result<()> {
        let s = *self.u.choose(options)?;
        self.w(s);
        Ok(())
    }

    /// Up to `max` bytes of raw input text, so mutations can reach what the grammar cannot.
    fn raw(&mut self, max: usize) -> Result<()> {
        let len = self.u.int_in_range(0..=max)?;
        let bytes = self.u.bytes(len.min(self.u.len()))?;
        self.out.push_str(&String::from_utf8_lossy(bytes));
        Ok(())
    }

    fn statement(&mut self) -> Result<()> {
        match self.u.int_in_range(0u8..=19)? {
            0..=16 => self.query(0)?,
            17 => {
                self.pick(OTHER_STATEMENTS)?;
                self.expr(1)?;
            }
            18 => {
                self.raw(16)?;
                self.query(0)?;
            }
            _ => {
                self.query(0)?;
                self.raw(16)?;
            }
        }
        if self.chance(1, 10)? {
            self.pick(TAILS)?;
        }
        Ok(())
    }

    fn query(&mut self, depth: u32) -> Result<()> {
        if depth < MAX_DEPTH && self.chance(1, 4)? {
            self.kw("WITH")?;
            self.sp()?;
            if self.chance(1, 4)? {
                self.kw("RECURSIVE")?;
                self.sp()?;
            }
            let n = self.u.int_in_range(1u8..=3)?;
            for i in 0..n {
                if i > 0 {
                    self.w(",");
                    self.sp()?;
                }
                self.cte(depth + 1)?;
            }
            self.sp()?;
        }
        self.body(depth)?;
        if self.chance(1, 5)? {
            self.sp()?;
            self.kw("ORDER BY")?;
            self.sp()?;
            self.expr_list(depth + 1, 2)?;
            if self.u.arbitrary()? {
                self.w(" DESC NULLS LAST");
            }
        }
        if self.chance(1, 5)? {
            self.sp()?;
            self.kw("LIMIT")?;
            self.sp()?;
            match self.u.int_in_range(0u8..=3)? {
                0 => self.w("10"),
                1 => self.w("ALL"),
                2 => self.w("1, 2"),
                _ => self.expr(depth + 1)?,
            }
        }
        if self.chance(1, 10)? {
            self.w(" OFFSET 1");
        }
        if self.chance(1, 30)? {
            self.w(" FETCH FIRST 1 ROWS ONLY");
        }
        Ok(())
    }

    fn cte(&mut self, depth: u32) -> Result<()> {
        self.pick(CTE_NAMES)?;
        if self.chance(1, 5)? {
            self.w("(");
            self.pick(COLUMNS)?;
            if self.u.arbitrary()? {
                self.w(", ");
                self.pick(COLUMNS)?;
            }
            self.w(")");
        }
        self.sp()?;
        self.kw("AS")?;
        self.sp()?;
        match self.u.int_in_range(0u8..=5)? {
            0..=3 => {}
            4 => self.w("MATERIALIZED "),
            _ => self.w("NOT MATERIALIZED "),
        }
        self.w("(");
        self.query(depth)?;
        self.w(")");
        Ok(())
    }

    fn body(&mut self, depth: u32) -> Result<()> {
        let choice = if depth >= MAX_DEPTH {
            0
        } else {
            self.u.int_in_range(0u8..=9)?
        };
        match choice {
            0..=5 => self.select(depth),
            6 | 7 => {
                self.body(depth + 1)?;
                self.sp()?;
                self.pick(&[
                    "UNION",
                    "UNION ALL",
                    "INTERSECT",
                    "EXCEPT",
                    "EXCEPT ALL",
                    "UNION DISTINCT",
                    "MINUS",
                ])?;
                self.sp()?;
                self.body(depth + 1)
            }
            8 => {
                self.w("(");
                self.query(depth + 1)?;
                self.w(")");
                Ok(())
            }
            _ => {
                self.kw("VALUES")?;
                self.sp()?;
                let rows = self.u.int_in_range(1u8..=2)?;
                for r in 0..rows {
                    if r > 0 {
                        self.w(", ");
                    }
                    self.w("(");
                    self.expr_list(depth + 1, 2)?;
                    self.w(")");
                }
                Ok(())
            }
        }
    }

    fn select(&mut self, depth: u32) -> Result<()> {
        self.kw("SELECT")?;
        self.sp()?;
        match self.u.int_in_range(0u8..=9)? {
            0..=7 => {}
            8 => self.w("DISTINCT "),
            _ => {
                self.w("DISTINCT ON (");
                self.expr(depth + 1)?;
                self.w(") ");
            }
        }
        let n = self.u.int_in_range(1u8..=3)?;
        for i in 0..n {
            if i > 0 {
                self.w(",");
                self.sp()?;
            }
            self.select_item(depth)?;
        }
        if !self.chance(1, 8)? {
            self.sp()?;
            self.kw("FROM")?;
            self.sp()?;
            let n = self.u.int_in_range(1u8..=2)?;
            for i in 0..n {
                if i > 0 {
                    self.w(",");
                    self.sp()?;
                }
                self.table_expr(depth)?;
            }
        }
        if self.chance(1, 2)? {
            self.sp()?;
            self.kw("WHERE")?;
            self.sp()?;
            self.expr(depth + 1)?;
        }
        if self.chance(1, 5)? {
            self.sp()?;
            self.kw("GROUP BY")?;
            self.sp()?;
            match self.u.int_in_range(0u8..=3)? {
                0 | 1 => self.expr_list(depth + 1, 2)?,
                2 => {
                    self.w("ROLLUP (");
                    self.expr_list(depth + 1, 2)?;
                    self.w(")");
                }
                _ => self.w("ALL"),
            }
            if self.chance(1, 3)? {
                self.sp()?;
                self.kw("HAVING")?;
                self.sp()?;
                self.expr(depth + 1)?;
            }
        }
        if self.chance(1, 12)? {
            self.w(" WINDOW w AS (PARTITION BY ");
            self.expr(depth + 1)?;
            self.w(")");
        }
        Ok(())
    }

    fn select_item(&mut self, depth: u32) -> Result<()> {
        match self.u.int_in_range(0u8..=9)? {
            0 => self.w("*"),
            1 => {
                self.pick(ALIASES)?;
                self.w(".*");
            }
            2 => {
                self.expr(depth + 1)?;
                self.sp()?;
                self.kw("AS")?;
                self.sp()?;
                self.pick(ALIASES)?;
            }
            3 => {
                self.expr(depth + 1)?;
                self.w(" ");
                self.pick(COLUMNS)?;
            }
            _ => self.expr(depth + 1)?,
        }
        Ok(())
    }

    fn table_name(&mut self) -> Result<()> {
        if self.chance(2, 3)? {
            self.pick(TABLES)
        } else {
            self.pick(TABLE_SPELLINGS)
        }
    }

    fn alias(&mut self) -> Result<()> {
        match self.u.int_in_range(0u8..=5)? {
            0 | 1 => Ok(()),
            2 => {
                self.sp()?;
                self.kw("AS")?;
                self.sp()?;
                self.pick(ALIASES)
            }
            3 => {
                self.w(" ");
                self.pick(ALIASES)?;
                self.w("(");
                self.pick(COLUMNS)?;
                self.w(")");
                Ok(())
            }
            _ => {
                self.w(" ");
                self.pick(ALIASES)
            }
        }
    }

    fn table_expr(&mut self, depth: u32) -> Result<()> {
        let choice = if depth >= MAX_DEPTH {
            0
        } else {
            self.u.int_in_range(0u8..=12)?
        };
        match choice {
            0..=4 => {
                self.table_name()?;
                self.alias()?;
            }
            5 | 6 => {
                self.table_expr(depth + 1)?;
                self.sp()?;
                self.pick(&[
                    "JOIN",
                    "LEFT JOIN",
                    "RIGHT JOIN",
                    "FULL JOIN",
                    "INNER JOIN",
                    "LEFT OUTER JOIN",
                    "CROSS JOIN",
                    "NATURAL JOIN",
                    "JOIN LATERAL",
                    "LEFT JOIN LATERAL",
                    "SEMI JOIN",
                    "CROSS APPLY",
                ])?;
                self.sp()?;
                self.table_expr(depth + 1)?;
                match self.u.int_in_range(0u8..=3)? {
                    0 | 1 => {
                        self.sp()?;
                        self.kw("ON")?;
                        self.sp()?;
                        self.expr(depth + 1)?;
                    }
                    2 => {
                        self.w(" USING (");
                        self.pick(COLUMNS)?;
                        self.w(")");
                    }
                    _ => {}
                }
            }
            7 => {
                self.w("(");
                self.table_expr(depth + 1)?;
                self.w(" JOIN ");
                self.table_expr(depth + 1)?;
                self.w(" ON true)");
                self.alias()?;
            }
            8 | 9 => {
                if self.u.arbitrary()? {
                    self.kw("LATERAL")?;
                    self.sp()?;
                }
                self.w("(");
                self.query(depth + 1)?;
                self.w(")");
                self.alias()?;
            }
            10 => {
                self.pick(FUNCTIONS)?;
                self.w("(");
                self.expr_list(depth + 1, 2)?;
                self.w(")");
                if self.u.arbitrary()? {
                    self.w(" WITH ORDINALITY");
                }
                self.alias()?;
            }
            11 => {
                self.w("unnest(ARRAY[");
                self.expr_list(depth + 1, 2)?;
                self.w("])");
                self.alias()?;
            }
            _ => {
                self.w("ROWS FROM (generate_series(1, 2), ");
                self.pick(FUNCTIONS)?;
                self.w("(1))");
                self.alias()?;
            }
        }
        Ok(())
    }

    fn expr_list(&mut self, depth: u32, max: u8) -> Result<()> {
        let n = self.u.int_in_range(1..=max)?;
        for i in 0..n {
            if i > 0 {
                self.w(",");
                self.sp()?;
            }
            self.expr(depth)?;
        }
        Ok(())
    }

    fn column(&mut self) -> Result<()> {
        match self.u.int_in_range(0u8..=3)? {
            0 | 1 => self.pick(COLUMNS),
            2 => {
                self.pick(ALIASES)?;
                self.w(".");
                self.pick(COLUMNS)
            }
            _ => {
                self.table_name()?;
                self.w(".");
                self.pick(COLUMNS)
            }
        }
    }

    fn expr(&mut self, depth: u32) -> Result<()> {
        let choice = if depth >= MAX_DEPTH {
            self.u.int_in_range(0u8..=2)?
        } else {
            self.u.int_in_range(0u8..=29)?
        };
        match choice {
            0 | 1 => self.column()?,
            2 => self.pick(LITERALS)?,
            3..=6 => {
                self.expr(depth + 1)?;
                self.sp()?;
                self.pick(BINARY_OPERATORS)?;
                self.sp()?;
                self.expr(depth + 1)?;
            }
            7 => {
                self.pick(UNARY_OPERATORS)?;
                self.expr(depth + 1)?;
            }
            8..=11 => self.function(depth)?,
            12 => {
                self.w("(");
                self.query(depth + 1)?;
                self.w(")");
            }
            13 => {
                if self.u.arbitrary()? {
                    self.kw("NOT")?;
                    self.sp()?;
                }
                self.kw("EXISTS")?;
                self.w(" (");
                self.query(depth + 1)?;
                self.w(")");
            }
            14 => {
                self.expr(depth + 1)?;
                self.sp()?;
                self.kw("IN")?;
                self.w(" (");
                if self.u.arbitrary()? {
                    self.query(depth + 1)?;
                } else {
                    self.expr_list(depth + 1, 3)?;
                }
                self.w(")");
            }
            15 => {
                self.expr(depth + 1)?;
                self.w(" = ");
                self.pick(&["ANY", "ALL", "SOME"])?;
                self.w(" (");
                if self.u.arbitrary()? {
                    self.query(depth + 1)?;
                } else {
                    self.w("ARRAY[");
                    self.expr_list(depth + 1, 2)?;
                    self.w("]");
                }
                self.w(")");
            }
            16 => {
                self.kw("CASE")?;
                if self.u.arbitrary()? {
                    self.w(" ");
                    self.expr(depth + 1)?;
                }
                self.w(" WHEN ");
                self.expr(depth + 1)?;
                self.w(" THEN ");
                self.expr(depth + 1)?;
                if self.u.arbitrary()? {
                    self.w(" ELSE ");
                    self.expr(depth + 1)?;
                }
                self.w(" END");
            }
            17 => {
                if self.u.arbitrary()? {
                    self.w("CAST(");
                    self.expr(depth + 1)?;
                    self.w(" AS ");
                    self.pick(TYPES)?;
                    self.w(")");
                } else {
                    self.expr(depth + 1)?;
                    self.w("::");
                    self.pick(TYPES)?;
                }
            }
            18 => {
                self.w("(");
                self.expr(depth + 1)?;
                self.w(")");
            }
            19 => {
                self.pick(&["ARRAY[", "ROW(", "(", "ARRAY("])?;
                if self.out.ends_with("ARRAY(") {
                    self.query(depth + 1)?;
                    self.w(")");
                } else {
                    let close = if self.out.ends_with('[') { "]" } else { ")" };
                    self.expr_list(depth + 1, 3)?;
                    self.w(close);
                }
            }
            20 => {
                self.expr(depth + 1)?;
                self.pick(&["[1]", "[1:2]", ".name", ".*", "->'a'", "->>0", "#>'{a}'"])?;
            }
            21 => {
                self.expr(depth + 1)?;
                self.sp()?;
                self.pick(&[
                    "IS NULL",
                    "IS NOT NULL",
                    "IS TRUE",
                    "ISNULL",
                    "NOTNULL",
                    "IS DOCUMENT",
                    "IS JSON",
                    "BETWEEN 1 AND 2",
                    "NOT BETWEEN SYMMETRIC 2 AND 1",
                    "COLLATE \"C\"",
                    "AT TIME ZONE 'UTC'",
                    "LIKE 'a%' ESCAPE '!'",
                ])?;
            }
            22 => {
                self.pick(&[
                    "EXTRACT(year FROM ",
                    "SUBSTRING(",
                    "TRIM(BOTH 'x' FROM ",
                    "POSITION('a' IN ",
                    "OVERLAY('abc' PLACING 'x' FROM ",
                    "CEIL(",
                    "FLOOR(",
                    "GROUPING(",
                    "XMLELEMENT(NAME x, ",
                    "COLLATION FOR (",
                ])?;
                self.expr(depth + 1)?;
                if self.out.ends_with("SUBSTRING(") {
                    self.w(" FROM 1 FOR 2");
                }
                self.w(")");
            }
            23 => self.raw(12)?,
            24 => self.pick(TABLES)?,
            _ => self.column()?,
        }
        Ok(())
    }

    fn function(&mut self, depth: u32) -> Result<()> {
        self.pick(FUNCTIONS)?;
        self.w("(");
        match self.u.int_in_range(0u8..=7)? {
            0 => {}
            1 => self.w("*"),
            2 => {
                self.w("DISTINCT ");
                self.expr(depth + 1)?;
            }
            3 => {
                self.w("days => ");
                self.expr(depth + 1)?;
            }
            4 => {
                self.expr(depth + 1)?;
                self.w(" ORDER BY ");
                self.expr(depth + 1)?;
            }
            _ => self.expr_list(depth + 1, 3)?,
        }
        self.w(")");
        match self.u.int_in_range(0u8..=7)? {
            0..=4 => {}
            5 => {
                self.w(" FILTER (WHERE ");
                self.expr(depth + 1)?;
                self.w(")");
            }
            6 => {
                self.w(" OVER (PARTITION BY ");
                self.expr(depth + 1)?;
                self.w(" ORDER BY ");
                self.expr(depth + 1)?;
                self.w(")");
            }
            _ => {
                self.w(" WITHIN GROUP (ORDER BY ");
                self.expr(depth + 1)?;
                self.w(")");
            }
        }
        Ok(())
    }
}
