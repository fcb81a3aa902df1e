//! Verified identity through the real router, against a real PostgreSQL: tokens that are valid,
//! expired, wrongly signed, for another audience or issuer, with `alg: none`, or signed with a
//! public key used as an HMAC secret; a body user id that disagrees with the token; API keys
//! alongside tokens; and the start-up refusals of an incomplete configuration.

mod common;

use std::path::PathBuf;

use axum::body::Body;
use axum::http::{Method, StatusCode};
use common::*;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use rowgate::auth::ApiKeys;
use rowgate::identity::{JwtConfig, API_KEY_HEADER};
use rowgate::server::ServeConfig;
use serde_json::{json, Value};

const SECRET: &str = "a test secret of at least thirty-two bytes, for HS256";
const ISSUER: &str = "https://login.example.test/";
const AUDIENCE: &str = "rowgate-test";
const UNAUTHORIZED: StatusCode = StatusCode::UNAUTHORIZED;
const FORBIDDEN: StatusCode = StatusCode::FORBIDDEN;
const DEPARTMENTS: &str = "SELECT DISTINCT department FROM invoices ORDER BY 1";

fn key_path(name: &str) -> PathBuf {
    manifest_path("tests/keys").join(name)
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Claims of a token for `user` that every check accepts; tests spoil one field at a time.
fn claims(user: &str) -> Value {
    json!({"sub": user, "iss": ISSUER, "aud": AUDIENCE, "exp": now() + 600, "iat": now()})
}

fn hs256(claims: &Value, secret: &[u8]) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret),
    )
    .expect("token encodes")
}

fn signed(alg: Algorithm, kid: Option<&str>, pem_file: &str, claims: &Value) -> String {
    let pem = std::fs::read(key_path(pem_file)).expect("test key is readable");
    let key = match alg {
        Algorithm::ES256 => EncodingKey::from_ec_pem(&pem),
        _ => EncodingKey::from_rsa_pem(&pem),
    }
    .expect("test key parses");
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_string);
    encode(&header, claims, &key).expect("token encodes")
}

fn b64(value: &Value) -> String {
    base64_url(value.to_string().as_bytes())
}

/// base64url without padding, as JWTs spell it (a few lines rather than another dev-dependency).
fn base64_url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

fn jwt_config() -> JwtConfig {
    JwtConfig {
        hs256_secret: None,
        jwks_file: None,
        issuer: Some(ISSUER.into()),
        audience: Some(AUDIENCE.into()),
        claim: "sub".into(),
        leeway_secs: 0,
    }
}

fn with_secret(db: &TestDb) -> ServeConfig {
    let mut config = db.serve_config();
    config.jwt = JwtConfig {
        hs256_secret: Some(SECRET.into()),
        ..jwt_config()
    };
    config
}

fn with_jwks(db: &TestDb) -> ServeConfig {
    let mut config = db.serve_config();
    config.jwt = JwtConfig {
        jwks_file: Some(key_path("jwks.json")),
        ..jwt_config()
    };
    config
}

/// `POST /v1/query` with extra headers.
async fn post(router: &axum::Router, headers: &[(&str, &str)], body: &Value) -> Reply {
    let mut all = vec![("content-type", "application/json")];
    all.extend_from_slice(headers);
    call(router, Method::POST, "/v1/query", &all, body.to_string()).await
}

async fn post_with_token(router: &axum::Router, token: &str, body: &Value) -> Reply {
    let bearer = format!("Bearer {token}");
    post(router, &[("authorization", bearer.as_str())], body).await
}

fn departments(reply: &Reply) -> Vec<String> {
    reply
        .rows()
        .iter()
        .map(|r| r["department"].as_str().expect("text").to_string())
        .collect()
}

/// Asserts an `invalid_token` whose message names the problem.
fn refused_token(reply: &Reply, problem: &str) {
    reply.error(UNAUTHORIZED, "invalid_token");
    assert!(
        reply.message().contains(problem),
        "expected the message to say `{problem}`: {reply:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hs256_tokens_name_the_caller_and_bad_ones_are_refused() {
    let db = TestDb::new().await;
    let router = db.router_with(&with_secret(&db)).await;
    let sql = json!({"sql": DEPARTMENTS});

    // Valid: the token alone says who calls; bob and anne see different departments.
    let bob = hs256(&claims("bob"), SECRET.as_bytes());
    let anne = hs256(&claims("anne"), SECRET.as_bytes());
    let bob_sees = departments(&post_with_token(&router, &bob, &sql).await);
    let anne_sees = departments(&post_with_token(&router, &anne, &sql).await);
    assert_eq!(bob_sees, ["HR", "Operations"]);
    assert_ne!(bob_sees, anne_sees);
    // The same answer as the trusted-application mode gives bob.
    let plain = db.router().await;
    assert_eq!(
        departments(&query(&plain, "bob", DEPARTMENTS).await),
        bob_sees
    );

    // A body user id that agrees is fine; one that disagrees is refused, not obeyed.
    let agree = json!({"user_id": "bob", "sql": DEPARTMENTS});
    assert_eq!(
        departments(&post_with_token(&router, &bob, &agree).await),
        bob_sees
    );
    let disagree = json!({"user_id": "anne", "sql": DEPARTMENTS});
    post_with_token(&router, &bob, &disagree)
        .await
        .error(FORBIDDEN, "user_mismatch");

    // No token; a token that is not a JWT (an API key, say); an empty bearer.
    post(&router, &[], &agree)
        .await
        .error(UNAUTHORIZED, "unauthorized");
    refused_token(&post_with_token(&router, "k1", &sql).await, "not a JWT");
    post(&router, &[("authorization", "Bearer ")], &sql)
        .await
        .error(UNAUTHORIZED, "unauthorized");

    // Expired (no leeway configured), not yet valid, another audience, another issuer.
    let mut expired = claims("bob");
    expired["exp"] = json!(now() - 3600);
    refused_token(
        &post_with_token(&router, &hs256(&expired, SECRET.as_bytes()), &sql).await,
        "expired",
    );
    let mut early = claims("bob");
    early["nbf"] = json!(now() + 3600);
    refused_token(
        &post_with_token(&router, &hs256(&early, SECRET.as_bytes()), &sql).await,
        "not valid yet",
    );
    let mut audience = claims("bob");
    audience["aud"] = json!("another-service");
    refused_token(
        &post_with_token(&router, &hs256(&audience, SECRET.as_bytes()), &sql).await,
        "audience",
    );
    let mut issuer = claims("bob");
    issuer["iss"] = json!("https://evil.example.test/");
    refused_token(
        &post_with_token(&router, &hs256(&issuer, SECRET.as_bytes()), &sql).await,
        "issuer",
    );
    // Without exp, aud or the id claim.
    for missing in ["exp", "aud", "sub"] {
        let mut partial = claims("bob");
        partial.as_object_mut().unwrap().remove(missing);
        refused_token(
            &post_with_token(&router, &hs256(&partial, SECRET.as_bytes()), &sql).await,
            missing,
        );
    }

    // Wrongly signed: another secret, or bob's token with anne's claims pasted in.
    let wrong = hs256(
        &claims("bob"),
        b"another secret that is also thirty-two bytes long",
    );
    refused_token(&post_with_token(&router, &wrong, &sql).await, "signature");
    let (head, rest) = bob.split_once('.').unwrap();
    let signature = rest.rsplit_once('.').unwrap().1;
    let forged = format!("{head}.{}.{signature}", b64(&claims("anne")));
    refused_token(&post_with_token(&router, &forged, &sql).await, "signature");

    // alg: none, with and without a signature part, and in other spellings.
    for alg in ["none", "None", "NONE"] {
        let header = b64(&json!({"alg": alg, "typ": "JWT"}));
        let payload = b64(&claims("bob"));
        for token in [
            format!("{header}.{payload}."),
            format!("{header}.{payload}.{signature}"),
        ] {
            refused_token(&post_with_token(&router, &token, &sql).await, "not a JWT");
        }
    }
    // A signed RS256 token when only an HS256 secret is configured: no key for it.
    let rs = signed(Algorithm::RS256, Some("rsa-1"), "rsa.pem", &claims("bob"));
    refused_token(
        &post_with_token(&router, &rs, &sql).await,
        "no configured key",
    );

    // /v1/schema goes through the same identity: token alone, agreeing, disagreeing.
    let bearer = format!("Bearer {bob}");
    let auth = [("authorization", bearer.as_str())];
    let schema = call(&router, Method::GET, "/v1/schema", &auth, Body::empty()).await;
    assert!(schema.ok()["tables"]
        .as_array()
        .is_some_and(|t| !t.is_empty()));
    call(
        &router,
        Method::GET,
        "/v1/schema?user_id=bob",
        &auth,
        Body::empty(),
    )
    .await
    .ok();
    call(
        &router,
        Method::GET,
        "/v1/schema?user_id=anne",
        &auth,
        Body::empty(),
    )
    .await
    .error(FORBIDDEN, "user_mismatch");
    call(
        &router,
        Method::GET,
        "/v1/schema?user_id=bob",
        &[],
        Body::empty(),
    )
    .await
    .error(UNAUTHORIZED, "unauthorized");
    let expired = format!("Bearer {}", hs256(&expired, SECRET.as_bytes()));
    let schema = call(
        &router,
        Method::GET,
        "/v1/schema",
        &[("authorization", expired.as_str())],
        Body::empty(),
    )
    .await;
    refused_token(&schema, "expired");

    // A valid token for an id the policy does not know is the database's unknown_user.
    let mallory = hs256(&claims("mallory"), SECRET.as_bytes());
    post_with_token(&router, &mallory, &sql)
        .await
        .error(FORBIDDEN, "unknown_user");

    // A bad token with a bad body still answers 401 first: nothing is learnt without a token.
    refused_token(
        &post(
            &router,
            &[("authorization", "Bearer x.y.z")],
            &json!({"nope": 1}),
        )
        .await,
        "not a JWT",
    );
    post_with_token(&router, &bob, &json!({"nope": 1}))
        .await
        .error(StatusCode::BAD_REQUEST, "invalid_request");
    db.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rs256_and_es256_keys_come_from_the_jwks_file() {
    let db = TestDb::new().await;
    let router = db.router_with(&with_jwks(&db)).await;
    let sql = json!({"sql": DEPARTMENTS});

    let rs = signed(Algorithm::RS256, Some("rsa-1"), "rsa.pem", &claims("bob"));
    let es = signed(Algorithm::ES256, Some("ec-1"), "ec.pem", &claims("anne"));
    let no_kid = signed(Algorithm::ES256, None, "ec.pem", &claims("bob"));
    assert_eq!(
        departments(&post_with_token(&router, &rs, &sql).await),
        ["HR", "Operations"]
    );
    let anne_sees = departments(&post_with_token(&router, &es, &sql).await);
    assert!(anne_sees.contains(&"Sales".to_string()), "{anne_sees:?}");
    assert_eq!(
        departments(&post_with_token(&router, &no_kid, &sql).await),
        ["HR", "Operations"]
    );

    // A key that is not in the file, even under a kid that is.
    let stranger = signed(
        Algorithm::RS256,
        Some("rsa-1"),
        "rsa_stranger.pem",
        &claims("bob"),
    );
    refused_token(
        &post_with_token(&router, &stranger, &sql).await,
        "signature",
    );
    let unknown_kid = signed(Algorithm::RS256, Some("rsa-9"), "rsa.pem", &claims("bob"));
    refused_token(
        &post_with_token(&router, &unknown_kid, &sql).await,
        "no configured key",
    );
    // The RSA key signing an ES256-labelled token's kid: the kid's key is EC, so no RS key.
    let mislabelled = signed(Algorithm::RS256, Some("ec-1"), "rsa.pem", &claims("bob"));
    refused_token(
        &post_with_token(&router, &mislabelled, &sql).await,
        "no configured key",
    );

    // Algorithm confusion: HS256 with the public key's text as the HMAC secret.
    let jwks = std::fs::read(key_path("jwks.json")).unwrap();
    let jwks_value: Value = serde_json::from_slice(&jwks).unwrap();
    let modulus = jwks_value["keys"][0]["n"].as_str().unwrap();
    for secret in [jwks.as_slice(), modulus.as_bytes()] {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some("rsa-1".into());
        let token = encode(&header, &claims("bob"), &EncodingKey::from_secret(secret)).unwrap();
        refused_token(
            &post_with_token(&router, &token, &sql).await,
            "no configured key",
        );
    }

    // Expired and wrong audience with an asymmetric key too.
    let mut expired = claims("bob");
    expired["exp"] = json!(now() - 60);
    let token = signed(Algorithm::ES256, Some("ec-1"), "ec.pem", &expired);
    refused_token(&post_with_token(&router, &token, &sql).await, "expired");
    let mut audience = claims("bob");
    audience["aud"] = json!(["another-service"]);
    let token = signed(Algorithm::RS256, Some("rsa-1"), "rsa.pem", &audience);
    refused_token(&post_with_token(&router, &token, &sql).await, "audience");
    // An audience list that includes rowgate's is accepted.
    audience["aud"] = json!(["another-service", AUDIENCE]);
    let token = signed(Algorithm::RS256, Some("rsa-1"), "rsa.pem", &audience);
    post_with_token(&router, &token, &sql).await.ok();
    db.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_claim_names_the_caller_and_api_keys_still_apply() {
    let db = TestDb::new().await;
    let mut config = with_secret(&db);
    config.jwt.claim = "preferred_username".into();
    config.api_keys = ApiKeys::parse("k1");
    let router = db.router_with(&config).await;
    let sql = json!({"sql": DEPARTMENTS});

    let mut named = claims("anne");
    named["preferred_username"] = json!("bob");
    let token = hs256(&named, SECRET.as_bytes());
    let bearer = format!("Bearer {token}");
    let key_and_token = [("authorization", bearer.as_str()), (API_KEY_HEADER, "k1")];
    // The configured claim, not `sub`, is the caller.
    let reply = post(&router, &key_and_token, &sql).await;
    assert_eq!(departments(&reply), ["HR", "Operations"]);
    // The token without the key, with a wrong key, and the key in Authorization instead.
    post(&router, &[("authorization", bearer.as_str())], &sql)
        .await
        .error(UNAUTHORIZED, "unauthorized");
    post(
        &router,
        &[("authorization", bearer.as_str()), (API_KEY_HEADER, "k2")],
        &sql,
    )
    .await
    .error(UNAUTHORIZED, "unauthorized");
    refused_token(
        &post(
            &router,
            &[("authorization", "Bearer k1"), (API_KEY_HEADER, "k1")],
            &sql,
        )
        .await,
        "not a JWT",
    );
    // A claim that is not an id.
    let mut object = claims("bob");
    object["preferred_username"] = json!({"name": "bob"});
    let bearer = format!("Bearer {}", hs256(&object, SECRET.as_bytes()));
    refused_token(
        &post(
            &router,
            &[("authorization", bearer.as_str()), (API_KEY_HEADER, "k1")],
            &sql,
        )
        .await,
        "neither a string nor an integer",
    );
    db.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_alone_may_listen_beyond_loopback() {
    let db = TestDb::new().await;
    let mut config = with_secret(&db);
    config.bind = "0.0.0.0:0".parse().unwrap();
    rowgate::server::prepare(&config)
        .await
        .expect("a token is an authentication of its own");
    config.jwt = JwtConfig::default();
    let error = rowgate::server::prepare(&config)
        .await
        .err()
        .expect("refused");
    assert!(error.to_string().contains("ROWGATE_API_KEYS"), "{error}");
    db.teardown().await;
}

/// The JWT settings are checked before anything else, so no database is needed here.
#[tokio::test]
async fn an_incomplete_configuration_is_refused_at_start_up() {
    let base = ServeConfig {
        database: admin_config("postgres"),
        bind: "127.0.0.1:0".parse().unwrap(),
        api_keys: ApiKeys::default(),
        policies: policies_dir(),
        key: rowgate::caller::IdentityKey([7; rowgate::caller::KEY_BYTES]),
        max_rows: 10,
        execute: Default::default(),
        limits: Default::default(),
        insecure: false,
        jwt: JwtConfig::default(),
        audit: Default::default(),
    };
    let dir = std::env::temp_dir().join(format!("rowgate-jwt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let oct = dir.join("oct.json");
    std::fs::write(&oct, r#"{"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}"#).unwrap();
    let rs384 = dir.join("rs384.json");
    let mut jwks: Value =
        serde_json::from_slice(&std::fs::read(key_path("jwks.json")).unwrap()).unwrap();
    jwks["keys"][0]["alg"] = json!("RS384");
    std::fs::write(&rs384, jwks.to_string()).unwrap();
    let empty = dir.join("empty.json");
    std::fs::write(&empty, r#"{"keys": []}"#).unwrap();

    let secret = || Some(SECRET.to_string());
    let cases: Vec<(JwtConfig, &str)> = vec![
        (
            JwtConfig {
                hs256_secret: secret(),
                audience: None,
                ..jwt_config()
            },
            "ROWGATE_JWT_AUDIENCE",
        ),
        (
            JwtConfig {
                hs256_secret: secret(),
                issuer: Some("  ".into()),
                ..jwt_config()
            },
            "ROWGATE_JWT_ISSUER",
        ),
        (
            JwtConfig {
                audience: Some(AUDIENCE.into()),
                ..JwtConfig::default()
            },
            "ROWGATE_JWT_HS256_SECRET or ROWGATE_JWT_JWKS",
        ),
        (
            JwtConfig {
                hs256_secret: Some("short".into()),
                ..jwt_config()
            },
            "at least 32",
        ),
        (
            JwtConfig {
                hs256_secret: secret(),
                claim: " ".into(),
                ..jwt_config()
            },
            "ROWGATE_JWT_CLAIM",
        ),
        (
            JwtConfig {
                jwks_file: Some(dir.join("missing.json")),
                ..jwt_config()
            },
            "cannot read the JWKS file",
        ),
        (
            JwtConfig {
                jwks_file: Some(oct),
                ..jwt_config()
            },
            "symmetric keys",
        ),
        (
            JwtConfig {
                jwks_file: Some(rs384),
                ..jwt_config()
            },
            "RS384",
        ),
        (
            JwtConfig {
                jwks_file: Some(empty),
                ..jwt_config()
            },
            "holds no keys",
        ),
    ];
    for (jwt, expected) in cases {
        let config = ServeConfig {
            jwt: jwt.clone(),
            ..base.clone()
        };
        let error = rowgate::server::prepare(&config)
            .await
            .err()
            .unwrap_or_else(|| panic!("{jwt:?} was accepted"));
        let text = error.to_string();
        assert!(
            text.contains(expected),
            "{jwt:?}: `{text}` lacks `{expected}`"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
