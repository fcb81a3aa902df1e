//! Random filter expressions for the error-oracle fuzzer, from a grammar rich in what
//! PostgreSQL folds or branches on: CASE, COALESCE, NULLIF, GREATEST/LEAST, boolean constants,
//! casts of literals and of columns (to date, int, float, jsonb, boolean), functions that raise
//! on some inputs (division, regular expressions, `make_date`, `split_part`, JSON keys), scalar
//! subqueries, arrays and subscripts. Every expression reads the hidden row's columns through
//! the alias `h`; `{other}` is a text value the query template supplies (a literal, another
//! FROM item's column, a subquery's output or an outer query's column).

/// SplitMix64: small, seedable, the same sequence on every machine.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Ty {
    Text,
    Int,
    Date,
    Float,
    Json,
}

const TYPES: [Ty; 5] = [Ty::Text, Ty::Int, Ty::Date, Ty::Float, Ty::Json];

/// One boolean filter over `h`, with `{other}` where the template's text value goes.
pub fn filter(rng: &mut Rng) -> String {
    let inner = boolean(rng, 3);
    // Most oracles need a cheap test of the hidden row before the part that raises: put one
    // in front often, in the forms an attacker would.
    let test = test_of_hidden(rng);
    match rng.below(6) {
        0 => format!("CASE WHEN {test} THEN {inner} END IS NOT NULL"),
        1 => format!("{test} AND {inner}"),
        2 => format!("({test} OR {inner})"),
        3 => format!("CASE WHEN {test} THEN {inner} ELSE true END"),
        4 => {
            // A value that may raise, folded or not, evaluated only for the hidden row.
            let ty = pick_type(rng);
            let risky = if rng.chance(50) {
                cast_to(rng, ty, 2)
            } else {
                raising(rng, ty, 2)
            };
            format!("CASE WHEN {test} THEN {risky} END IS NULL")
        }
        _ => inner,
    }
}

fn test_of_hidden(rng: &mut Rng) -> String {
    rng.pick(&[
        "h.team = 'vault'",
        "h.name = 'canary'",
        "h.level = 7",
        "h.born = DATE '1999-09-09'",
        "h.score > 1000",
        "h.active",
        "h.seen < TIMESTAMP '1990-01-01'",
        "h.team IN ('vault', 'other')",
    ])
    .to_string()
}

fn boolean(rng: &mut Rng, depth: u32) -> String {
    if depth == 0 {
        return match rng.below(4) {
            0 => test_of_hidden(rng),
            1 => rng.pick(&["true", "false", "NULL::boolean"]).to_string(),
            2 => {
                let ty = pick_type(rng);
                format!("{} IS NULL", value(rng, ty, 0))
            }
            _ => {
                let ty = pick_type(rng);
                format!("{} = {}", value(rng, ty, 0), value(rng, ty, 0))
            }
        };
    }
    let d = depth - 1;
    match rng.below(14) {
        0 => format!("({} AND {})", boolean(rng, d), boolean(rng, d)),
        1 => format!("({} OR {})", boolean(rng, d), boolean(rng, d)),
        2 => format!("NOT {}", boolean(rng, d)),
        3 => {
            let ty = pick_type(rng);
            let op = rng.pick(&["=", "<>", "<", ">=", "IS DISTINCT FROM"]);
            format!("{} {op} {}", value(rng, ty, d), value(rng, ty, d))
        }
        4 => {
            let ty = pick_type(rng);
            format!("{} IS NULL", value(rng, ty, d))
        }
        5 => {
            let ty = pick_type(rng);
            format!(
                "{} IN ({}, {})",
                value(rng, ty, d),
                value(rng, ty, d),
                value(rng, ty, d)
            )
        }
        6 => format!(
            "CASE WHEN {} THEN {} ELSE {} END",
            boolean(rng, d),
            boolean(rng, d),
            boolean(rng, d)
        ),
        7 => format!("COALESCE({}, {})", boolean(rng, d), boolean(rng, d)),
        8 => format!("({})::boolean", value(rng, Ty::Text, d)),
        9 => format!(
            "{} ~ {}",
            value(rng, Ty::Text, d),
            rng.pick(&["'('", "'a.*'", "h.name", "{other}"])
        ),
        10 => format!(
            "{} LIKE {}",
            value(rng, Ty::Text, d),
            value(rng, Ty::Text, d)
        ),
        11 => format!(
            "EXISTS (SELECT 1 FROM projects q WHERE q.staff_id = h.id AND {})",
            boolean(rng, d)
        ),
        12 => format!("({}) ? 'a'", value(rng, Ty::Json, d)),
        _ => test_of_hidden(rng),
    }
}

fn pick_type(rng: &mut Rng) -> Ty {
    TYPES[rng.below(TYPES.len())]
}

fn column(rng: &mut Rng, ty: Ty) -> String {
    match ty {
        Ty::Text => rng.pick(&["h.name", "h.team", "{other}"]),
        Ty::Int => rng.pick(&["h.id", "h.level"]),
        Ty::Date => "h.born",
        Ty::Float => "h.score",
        Ty::Json => "h.meta",
    }
    .to_string()
}

fn literal(rng: &mut Rng, ty: Ty) -> String {
    match ty {
        Ty::Text => rng.pick(&["'x'", "'vault'", "'2024-01-01'", "'1'", "'{}'", "''", "'0'"]),
        Ty::Int => rng.pick(&["0", "1", "7", "2147483647", "-1"]),
        Ty::Date => rng.pick(&["DATE '2024-01-01'", "'1999-09-09'::date", "CURRENT_DATE"]),
        Ty::Float => rng.pick(&["1.5", "0.0", "'NaN'::float8"]),
        Ty::Json => rng.pick(&["'{\"a\": 1}'::jsonb", "'[]'::jsonb", "'null'::jsonb"]),
    }
    .to_string()
}

/// A value of type `ty`: a column or literal at depth 0, else any form below.
fn value(rng: &mut Rng, ty: Ty, depth: u32) -> String {
    if depth == 0 || rng.chance(25) {
        return if rng.chance(50) {
            column(rng, ty)
        } else {
            literal(rng, ty)
        };
    }
    let d = depth - 1;
    match rng.below(9) {
        0 => format!("COALESCE({}, {})", value(rng, ty, d), value(rng, ty, d)),
        1 => format!("NULLIF({}, {})", value(rng, ty, d), value(rng, ty, d)),
        2 if ty != Ty::Json => format!(
            "{}({}, {})",
            rng.pick(&["GREATEST", "LEAST"]),
            value(rng, ty, d),
            value(rng, ty, d)
        ),
        3 => format!(
            "CASE WHEN {} THEN {} ELSE {} END",
            boolean(rng, d),
            value(rng, ty, d),
            value(rng, ty, d)
        ),
        4 => cast_to(rng, ty, d),
        5 => format!("(SELECT {})", value(rng, ty, d)),
        6 => format!(
            "(SELECT {} FROM projects p2 WHERE p2.id = 1)",
            value(rng, ty, d)
        ),
        _ => raising(rng, ty, d),
    }
}

/// A cast into `ty` from another type: raises for values that do not fit.
fn cast_to(rng: &mut Rng, ty: Ty, d: u32) -> String {
    let from = value(rng, Ty::Text, d);
    match ty {
        Ty::Text => {
            let any = pick_type(rng);
            format!("({})::text", value(rng, any, d))
        }
        Ty::Int => match rng.below(3) {
            0 => format!("({from})::int"),
            1 => format!("({})::int", value(rng, Ty::Float, d)),
            _ => format!("({from})::int4"),
        },
        Ty::Date => format!("({from})::date"),
        Ty::Float => format!("({from})::float8"),
        Ty::Json => format!("({from})::jsonb"),
    }
}

/// Functions and operators that raise on some inputs.
fn raising(rng: &mut Rng, ty: Ty, d: u32) -> String {
    match ty {
        Ty::Int => match rng.below(4) {
            0 => format!(
                "{} {} {}",
                value(rng, Ty::Int, d),
                rng.pick(&["/", "+", "*"]),
                rng.pick(&["0", "2147483647", "h.level", "h.id"])
            ),
            1 => format!("({} ->> 'a')::int", value(rng, Ty::Json, d)),
            2 => format!(
                "(ARRAY[{}, 2])[{}]",
                value(rng, Ty::Int, d),
                value(rng, Ty::Int, d)
            ),
            _ => format!("length({})", value(rng, Ty::Text, d)),
        },
        Ty::Text => match rng.below(4) {
            0 => format!(
                "split_part({}, ',', {})",
                value(rng, Ty::Text, d),
                value(rng, Ty::Int, d)
            ),
            1 => format!("{} ->> 'b'", value(rng, Ty::Json, d)),
            2 => format!("{} || {}", value(rng, Ty::Text, d), value(rng, Ty::Text, d)),
            // A count of at most 3: `repeat('', 2147483647)` loops for seconds without raising.
            _ => format!(
                "repeat({}, LEAST({}, 3))",
                value(rng, Ty::Text, d),
                value(rng, Ty::Int, d)
            ),
        },
        Ty::Date => match rng.below(2) {
            0 => format!("make_date({}, 1, 1)", value(rng, Ty::Int, d)),
            _ => format!("{} + {}", value(rng, Ty::Date, d), value(rng, Ty::Int, d)),
        },
        Ty::Float => format!(
            "{} / {}",
            value(rng, Ty::Float, d),
            value(rng, Ty::Float, d)
        ),
        Ty::Json => format!(
            "jsonb_build_object({}, 1)",
            rng.pick(&["NULL::text", "h.name", "{other}", "'k'"])
        ),
    }
}

/// The spellings of issue 20, and the attacks of earlier reviews, as filters over `h`: every
/// template runs each of them before the generated ones.
pub const KNOWN: &[&str] = &[
    "CASE WHEN h.team = 'vault' THEN COALESCE('x', h.name)::date END IS NULL",
    "CASE WHEN h.team = 'vault' THEN (CASE WHEN false THEN h.name ELSE 'x' END)::date END IS NULL",
    "CASE WHEN h.team = 'vault' THEN (CASE WHEN h.name IS NULL OR true THEN 'x' END)::date END IS NULL",
    "CASE WHEN h.team = 'vault' THEN {other}::date END IS NULL",
    "h.team = 'vault' AND COALESCE('x', h.name)::int = 1",
    "h.team = 'vault' AND COALESCE('{', h.name)::jsonb IS NULL",
    "h.team = 'vault' AND h.level = random()::int / 0",
    "CASE WHEN h.team = 'vault' THEN ('x' || '')::date END IS NULL",
    "h.team = 'vault' AND h.born = make_date(COALESCE(0, h.level), 1, 1)",
    "h.team = 'vault' AND h.level = h.level + 2147483647",
    "h.team = 'vault' AND split_part(COALESCE('a', h.name), ',', 0) = ''",
    "h.team = 'vault' AND jsonb_build_object(NULLIF('k', COALESCE('k', h.name)), 1) IS NULL",
];

/// The query templates: where the filter goes, and what `{other}` is there.
pub const TEMPLATES: &[(&str, &str, &str)] = &[
    (
        "where",
        "SELECT count(*) FROM staff h WHERE h.id = 900 AND {filter}",
        "'1'",
    ),
    (
        "join on",
        "SELECT count(*) FROM projects p JOIN staff h ON h.id = 900 AND {filter} WHERE p.id = 2",
        "p.title",
    ),
    (
        "having",
        "SELECT h.id FROM staff h WHERE h.id = 900 \
         GROUP BY h.id, h.name, h.team, h.born, h.seen, h.score, h.level, h.meta, h.active \
         HAVING {filter}",
        "'1'",
    ),
    (
        "subquery output",
        "SELECT count(*) FROM (SELECT *, {value} AS k FROM staff) h WHERE h.id = 900 AND {filter}",
        "h.k",
    ),
    (
        "side subquery",
        "SELECT count(*) FROM staff h, (SELECT {value} AS k FROM staff WHERE id = 2) s \
         WHERE h.id = 900 AND {filter}",
        "s.k",
    ),
    (
        "from function",
        "SELECT count(*) FROM staff h, upper(COALESCE({value}, h.name)) AS u (u) \
         WHERE h.id = 900 AND {filter}",
        "u.u",
    ),
    (
        "cte star",
        "WITH w AS (SELECT * FROM staff) SELECT count(*) FROM w h WHERE h.id = 900 AND {filter}",
        "h.name",
    ),
    (
        "correlated",
        "SELECT (SELECT count(*) FROM staff h WHERE h.id = 900 AND {filter}) \
         FROM staff o WHERE o.id = 2",
        "o.name",
    ),
];

/// The query of `template` for one generated filter (and, where the template has one, a
/// generated text output `{value}`, read through `{other}`).
pub fn instantiate(rng: &mut Rng, template: &str, other: &str) -> String {
    let mut filter = filter(rng);
    // Unqualified names too, where no other FROM item has the same columns.
    if !template.contains("JOIN") && rng.chance(30) {
        filter = filter.replace("h.", "");
    }
    let filter = filter.replace("{other}", other);
    // The output is computed in the subquery, where `{other}` is not in scope.
    // The output is computed in a subquery over `staff` without an alias.
    let output = value(rng, Ty::Text, 2)
        .replace("{other}", "'1'")
        .replace("h.", "");
    template
        .replace("{filter}", &filter)
        .replace("{value}", &output)
}
