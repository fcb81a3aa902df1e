//! Policy changes without a restart, never out of step: the gateway serves a copy of
//! `policies/` that each test edits; `Live::reload` (what SIGHUP runs) re-reads it, `rowgate
//! install` stamps the new version into the database, and between the two every query is
//! refused with `policy_out_of_date`. A file that does not load leaves the old policy in force.
//! `/readyz` reports both versions. One test sends a real SIGHUP to this process, which is safe
//! once the handler is installed (tokio's handler replaces the default action, ending the
//! process, before `watch_sighup` returns).

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use common::*;
use rowgate::http::AppState;
use rowgate::install::{install, InstallOptions};
use rowgate::policy::Policy;
use rowgate::reload::{self, ReloadError};

const OUT_OF_DATE: StatusCode = StatusCode::SERVICE_UNAVAILABLE;

static DIRS: AtomicUsize = AtomicUsize::new(0);

/// A private copy of `policies/`, removed when dropped.
struct PolicyDir(PathBuf);

impl PolicyDir {
    fn new() -> PolicyDir {
        let dir = std::env::temp_dir().join(format!(
            "rg_reload_{}_{}",
            std::process::id(),
            DIRS.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("a temporary policy folder");
        std::fs::copy(policies_dir().join("demo.yaml"), dir.join("demo.yaml"))
            .expect("the demo policy copies");
        PolicyDir(dir)
    }

    fn path(&self) -> &Path {
        &self.0
    }

    /// The demo policy without the ownership tables (`orders`, `order_items`).
    fn drop_ownership_tables(&self) {
        let file = self.0.join("demo.yaml");
        let text = std::fs::read_to_string(&file).expect("the copy reads");
        let start = text
            .find("  # --- ownership")
            .expect("the ownership section");
        let end = text
            .find("  # --- folder access")
            .expect("the next section");
        let edited = format!("{}{}", &text[..start], &text[end..]);
        std::fs::write(&file, edited).expect("the copy writes");
    }

    fn write(&self, name: &str, text: &str) {
        std::fs::write(self.0.join(name), text).expect("the policy file writes");
    }

    fn remove(&self, name: &str) {
        std::fs::remove_file(self.0.join(name)).expect("the policy file is removed");
    }

    fn policy(&self) -> Policy {
        Policy::load_dir(&self.0).expect("the edited policy loads")
    }
}

impl Drop for PolicyDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn serve(db: &TestDb, dir: &PolicyDir) -> (Arc<AppState>, axum::Router) {
    let mut config = db.serve_config();
    config.policies = dir.path().to_path_buf();
    let state = db.state_with(&config).await;
    let router = rowgate::http::router(state.clone());
    (state, router)
}

/// `rowgate install` of `policy` into the test database, as its administrator.
async fn install_policy(db: &TestDb, policy: &Policy) {
    let options = InstallOptions {
        agent_role: db.role.clone(),
        agent_password: Some(db.password.clone()),
    };
    install(&db.admin, policy, &db.key, &options)
        .await
        .unwrap_or_else(|e| panic!("install: {e}"));
}

const ORDERS: &str = "SELECT count(*) AS n FROM orders";
const INVOICES: &str = "SELECT count(*) AS n FROM invoices";

/// Every kind of request is refused while the versions differ, and says what to do.
async fn assert_refused(router: &axum::Router, loaded: &str, installed: &str) {
    for reply in [
        query(router, "bob", INVOICES).await,
        post_query(
            router,
            &serde_json::json!({"user_id": "bob", "sql": INVOICES, "dry_run": true}),
        )
        .await,
        get(router, "/v1/schema?user_id=bob").await,
    ] {
        reply.error(OUT_OF_DATE, "policy_out_of_date");
        assert!(reply.message().contains(loaded), "{reply:#?}");
        assert!(reply.message().contains(installed), "{reply:#?}");
        assert!(reply.hint().contains("rowgate install"), "{reply:#?}");
        assert!(reply.hint().contains("SIGHUP"), "{reply:#?}");
    }
    let ready = get(router, "/readyz").await;
    assert_eq!(ready.status, OUT_OF_DATE, "{ready:#?}");
    assert_eq!(ready.json["status"], "policy_out_of_date");
    assert_eq!(ready.json["policy_version"], loaded);
    assert_eq!(ready.json["installed_policy_version"], installed);
    assert_eq!(ready.json["error"]["code"], "policy_out_of_date");
}

async fn assert_ready(router: &axum::Router, version: &str) {
    let ready = get(router, "/readyz").await;
    let body = ready.ok();
    assert_eq!(body["status"], "ready");
    assert_eq!(body["policy_version"], version);
    assert_eq!(body["installed_policy_version"], version);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_then_install_refuses_in_between_and_runs_the_new_policy_after() {
    let db = TestDb::new().await;
    let dir = PolicyDir::new();
    let (state, router) = serve(&db, &dir).await;
    let old = policy().version;
    assert_eq!(state.live.versions().loaded, old);
    assert_ready(&router, &old).await;
    assert!(!rows(&router, "bob", ORDERS).await.is_empty());

    dir.drop_ownership_tables();
    let new = dir.policy().version;
    assert_ne!(new, old);
    let versions = state
        .live
        .reload()
        .await
        .expect("the edited policy reloads");
    assert_eq!(versions.loaded, new);
    assert_eq!(versions.installed.as_deref(), Some(old.as_str()));
    assert!(!versions.in_step);
    // The new policy is loaded but its views are not installed: nothing runs under a mix.
    assert_refused(&router, &new, &old).await;

    install_policy(&db, &dir.policy()).await;
    let versions = state
        .live
        .refresh()
        .await
        .expect("the installed version reads");
    assert!(versions.in_step, "{versions:?}");
    assert_ready(&router, &new).await;
    query(&router, "bob", ORDERS)
        .await
        .error(StatusCode::FORBIDDEN, "table_not_allowed");
    assert!(!rows(&router, "bob", INVOICES).await.is_empty());
    let schema = get(&router, "/v1/schema?user_id=bob").await;
    let tables = schema.ok()["tables"].as_array().expect("tables").clone();
    assert!(tables.iter().all(|t| t["name"] != "orders"), "{tables:?}");
    assert_eq!(schema.ok()["policy_version"], new.as_str());
    db.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn install_then_reload_and_the_poll_notices_install_by_itself() {
    let db = TestDb::new().await;
    let dir = PolicyDir::new();
    let (state, router) = serve(&db, &dir).await;
    let old = policy().version;
    let poll = reload::poll_installed(state.live.clone(), Duration::from_millis(50));

    // The administrator installs the new policy before the gateway has it: the poll notices,
    // and queries stop until the gateway loads the same files.
    dir.drop_ownership_tables();
    let new = dir.policy().version;
    install_policy(&db, &dir.policy()).await;
    wait_until(|| !state.live.versions().in_step).await;
    assert_eq!(
        state.live.versions().installed.as_deref(),
        Some(new.as_str())
    );
    assert_refused(&router, &old, &new).await;

    state
        .live
        .reload()
        .await
        .expect("the edited policy reloads");
    assert_ready(&router, &new).await;
    query(&router, "bob", ORDERS)
        .await
        .error(StatusCode::FORBIDDEN, "table_not_allowed");

    // Back to the original: reload first, and the poll brings it in step once installed.
    dir.write(
        "demo.yaml",
        &std::fs::read_to_string(policies_dir().join("demo.yaml")).unwrap(),
    );
    state
        .live
        .reload()
        .await
        .expect("the original policy reloads");
    assert_refused(&router, &old, &new).await;
    install_policy(&db, &policy()).await;
    wait_until(|| state.live.versions().in_step).await;
    assert!(!rows(&router, "bob", ORDERS).await.is_empty());
    poll.abort();
    db.teardown().await;
}

/// Waits for a condition the background poll brings about; a bound, not a timing assertion.
async fn wait_until(condition: impl Fn() -> bool) {
    let started = Instant::now();
    while !condition() {
        assert!(
            started.elapsed() < CALL_LIMIT,
            "the poll did not notice the install within {CALL_LIMIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_file_is_reported_and_the_old_policy_stays_in_force() {
    let db = TestDb::new().await;
    let dir = PolicyDir::new();
    let (state, router) = serve(&db, &dir).await;
    let old = policy().version;
    let before = rows(&router, "bob", ORDERS).await;

    for (text, says) in [
        ("tables:\n  notes:\n    rowz: \"true\"\n", "rowz"),
        (
            "tables:\n  notes:\n    rows: \"owner = = :user_id\"\n",
            "zz_bad.yaml",
        ),
        (
            "tables:\n  notes:\n    rows: \"owner = :nobody\"\n",
            "nobody",
        ),
        (
            "tables:\n  orders:\n    rows: \"true\"\n",
            "already defined",
        ),
        ("tables: [", "zz_bad.yaml"),
    ] {
        dir.write("zz_bad.yaml", text);
        let error = state
            .live
            .reload()
            .await
            .expect_err("a bad file must not load");
        assert!(matches!(error, ReloadError::Policy(_)), "{error:?}");
        let message = error.to_string();
        assert!(message.contains(says), "{text}: {message}");
        assert!(message.contains("old policy stays in force"), "{message}");
        // Still the old policy, in step, answering as before.
        let versions = state.live.versions();
        assert_eq!(versions.loaded, old);
        assert!(versions.in_step);
        assert_eq!(rows(&router, "bob", ORDERS).await, before);
    }
    // The SIGHUP path logs the same failure and keeps the old policy too.
    assert!(state.live.reload_and_log().await.is_err());
    assert_ready(&router, &old).await;

    // A file that loads but names a table the database lacks: loaded, yet out of step (there
    // is no view of it, and install would fail), so nothing runs until the folder is fixed.
    dir.remove("zz_bad.yaml");
    dir.write(
        "zz_extra.yaml",
        "tables:\n  notes:\n    source: public.no_such_table\n    rows: \"true\"\n",
    );
    let versions = state.live.reload().await.expect("a well-formed file loads");
    assert_ne!(versions.loaded, old);
    assert!(!versions.in_step);
    assert_refused(&router, &versions.loaded, &old).await;
    dir.remove("zz_extra.yaml");
    let versions = state.live.reload().await.expect("the fixed folder reloads");
    assert_eq!(versions.loaded, old);
    assert!(versions.in_step);
    assert_eq!(rows(&router, "bob", ORDERS).await, before);
    db.teardown().await;
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_sighup_reloads_the_policy_files() {
    let db = TestDb::new().await;
    let dir = PolicyDir::new();
    let (state, router) = serve(&db, &dir).await;
    let watcher = reload::watch_sighup(state.live.clone()).expect("the SIGHUP handler installs");
    dir.drop_ownership_tables();
    let new = dir.policy().version;
    let status = std::process::Command::new("kill")
        .args(["-HUP", &std::process::id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
    wait_until(|| state.live.versions().loaded == new).await;
    assert_refused(&router, &new, &policy().version).await;
    install_policy(&db, &dir.policy()).await;
    state
        .live
        .refresh()
        .await
        .expect("the installed version reads");
    assert_ready(&router, &new).await;
    watcher.abort();
    db.teardown().await;
}
