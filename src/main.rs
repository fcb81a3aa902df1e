//! The `rowgate` command line: `rewrite` (an offline dry run) and `check` (validate policies).
//!
//! Exit codes: 0 ok, 1 the query was refused, 2 usage or policy error.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use rowgate::parse::Limits;
use rowgate::pipeline;
use rowgate::policy::{Policy, Rule};
use rowgate::refusal::Refusal;

#[derive(Parser)]
#[command(
    name = "rowgate",
    version,
    about = "Makes AI-agent SQL safe: every table read becomes a read of the caller's permission view."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Rewrite one query offline and print the SQL that would run, with the plan (a dry run).
    Rewrite {
        /// Folder of policy files (*.yaml).
        #[arg(long, env = "ROWGATE_POLICIES", default_value = "./policies")]
        policies: PathBuf,
        /// The caller's user id (shown with the plan; the filter itself runs in the database).
        #[arg(long)]
        user: String,
        /// Largest SQL accepted, in bytes.
        #[arg(long, default_value_t = Limits::default().max_sql_bytes)]
        max_sql_bytes: usize,
        /// Deepest nesting accepted.
        #[arg(long, default_value_t = Limits::default().max_depth)]
        max_depth: usize,
        /// Print the result as JSON instead of text.
        #[arg(long)]
        json: bool,
        /// The agent's SQL.
        sql: String,
    },
    /// Validate the policy files and print what they grant.
    Check {
        /// Folder of policy files (*.yaml).
        #[arg(long, env = "ROWGATE_POLICIES", default_value = "./policies")]
        policies: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Rewrite {
            policies,
            user,
            max_sql_bytes,
            max_depth,
            json,
            sql,
        } => {
            let Some(policy) = load(&policies) else {
                return ExitCode::from(2);
            };
            let limits = Limits {
                max_sql_bytes,
                max_depth,
            };
            rewrite(&policy, &user, &sql, &limits, json)
        }
        Command::Check { policies } => match load(&policies) {
            Some(policy) => {
                print_grants(&policy);
                ExitCode::SUCCESS
            }
            None => ExitCode::from(2),
        },
    }
}

fn load(dir: &std::path::Path) -> Option<Policy> {
    match Policy::load_dir(dir) {
        Ok(policy) => Some(policy),
        Err(error) => {
            eprintln!("policy error: {error}");
            None
        }
    }
}

fn rewrite(policy: &Policy, user: &str, sql: &str, limits: &Limits, json: bool) -> ExitCode {
    match pipeline::rewrite(sql, policy, limits) {
        Ok(rewritten) => {
            let filters: Vec<(String, String)> = rewritten
                .plan
                .ctes
                .iter()
                .filter_map(|c| {
                    policy
                        .table(&c.table)
                        .map(|t| (c.table.clone(), t.rule.describe()))
                })
                .collect();
            if json {
                let out = serde_json::json!({
                    "user_id": user,
                    "rewritten_sql": rewritten.sql,
                    "plan": rewritten.plan,
                    "tables": filters.iter().map(|(t, f)| serde_json::json!({"table": t, "filter": f})).collect::<Vec<_>>(),
                    "policy_version": policy.version,
                });
                println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
            } else {
                println!("{}\n", rewritten.sql);
                println!("-- caller: {user} (policy {})", policy.version);
                for (table, filter) in &filters {
                    println!("-- {table}: {filter}");
                }
                for r in &rewritten.plan.references {
                    println!(
                        "-- line {} column {}: {} -> {}",
                        r.line, r.column, r.written, r.cte
                    );
                }
            }
            ExitCode::SUCCESS
        }
        Err(error) => {
            if json {
                let out = serde_json::json!({"error": {"code": error.code(), "message": error.to_string(), "hint": error.hint()}});
                println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
            } else {
                eprintln!(
                    "refused ({}): {error}\nhint: {}",
                    error.code(),
                    error.hint()
                );
            }
            ExitCode::from(1)
        }
    }
}

fn print_grants(policy: &Policy) {
    println!(
        "policy {} from {} file(s)",
        policy.version,
        policy.files.len()
    );
    if let Some(exists) = &policy.subject.exists {
        println!("callers: those for whom `{}` finds a row", exists.text);
    }
    for (name, attribute) in &policy.subject.attributes {
        println!("attribute :{name} = {}", attribute.text);
    }
    for table in policy.tables.values() {
        let rule = match &table.rule {
            Rule::Rows(_) => format!("rows where {}", table.rule.describe()),
            Rule::Match { .. } => format!("rows of the view where {}", table.rule.describe()),
        };
        let columns = table
            .columns
            .as_ref()
            .map(|c| c.join(", "))
            .unwrap_or_else(|| "all columns".into());
        println!(
            "table {} (from {}): {rule}; {columns}",
            table.name, table.source
        );
    }
    if !policy.extra_functions.is_empty() {
        let extra: Vec<&str> = policy.extra_functions.iter().map(String::as_str).collect();
        println!("extra functions: {}", extra.join(", "));
    }
}
