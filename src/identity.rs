//! Who is calling: the one function every endpoint asks, [`Identity::authenticate`].
//!
//! Two modes. Without JWT, the application is trusted to name the user: it proves itself with
//! an API key (`Authorization: Bearer <key>`, when keys are configured) and sends the user id.
//! With JWT, the user id is read from a verified token (`Authorization: Bearer <JWT>`, HS256
//! with a shared secret, or RS256/ES256 with public keys from a JWKS file; issuer, audience and
//! expiry checked). A user id the request also names must then be the token's, so a prompt
//! that talks the application into sending another id gains nothing. API keys, if configured
//! too, are still required and travel in `X-Rowgate-Api-Key`, since the token has the
//! `Authorization` header.

use std::path::{Path, PathBuf};

use axum::http::{header, HeaderMap};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};

use crate::auth::{ApiKeys, AuthError};
use crate::caller::{self, CallerError};
use crate::refusal::{ErrorCode, Refusal};

/// Header that carries an API key when the token has `Authorization`.
pub const API_KEY_HEADER: &str = "x-rowgate-api-key";
/// Header that names the user where a request has no body field for it (`/mcp`).
pub const USER_HEADER: &str = "x-rowgate-user";

/// Shortest HS256 secret accepted: RFC 7518 §3.2 asks for a key as long as the hash (256 bits).
pub const MIN_SECRET_BYTES: usize = 32;

/// JWT settings as configured (flags and environment); [`JwtVerifier::new`] checks them.
#[derive(Debug, Clone, Default)]
pub struct JwtConfig {
    pub hs256_secret: Option<String>,
    pub jwks_file: Option<PathBuf>,
    pub issuer: Option<String>,
    pub audience: Option<String>,
    /// The claim that holds the caller's id (`sub` by default).
    pub claim: String,
    /// Clock skew tolerated on `exp` and `nbf`, in seconds.
    pub leeway_secs: u64,
}

impl JwtConfig {
    /// Whether any JWT setting was given: then the configuration must be complete.
    pub fn is_requested(&self) -> bool {
        self.hs256_secret.is_some()
            || self.jwks_file.is_some()
            || self.issuer.is_some()
            || self.audience.is_some()
    }
}

/// Why a JWT configuration cannot be used. Start-up refuses it.
#[derive(Debug, thiserror::Error)]
pub enum JwtConfigError {
    #[error("JWT verification needs a key: set ROWGATE_JWT_HS256_SECRET or ROWGATE_JWT_JWKS")]
    NoKey,
    #[error("JWT verification needs an issuer: set ROWGATE_JWT_ISSUER to the `iss` your identity provider puts in its tokens")]
    NoIssuer,
    #[error("JWT verification needs an audience: set ROWGATE_JWT_AUDIENCE to the `aud` your identity provider issues for rowgate")]
    NoAudience,
    #[error("ROWGATE_JWT_CLAIM is empty: name the claim that holds the user id (default `sub`)")]
    NoClaim,
    #[error("ROWGATE_JWT_HS256_SECRET is {0} bytes; use at least {MIN_SECRET_BYTES} random bytes")]
    ShortSecret(usize),
    #[error("cannot read the JWKS file {path}: {error}")]
    ReadJwks { path: PathBuf, error: String },
    #[error("the JWKS file {path} is not a JSON Web Key Set: {error}")]
    ParseJwks { path: PathBuf, error: String },
    #[error("the JWKS file {path}, key {index}: {problem}")]
    BadKey {
        path: PathBuf,
        index: usize,
        problem: String,
    },
    #[error("the JWKS file {0} holds no keys")]
    EmptyJwks(PathBuf),
}

/// Why a request's identity was refused.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error(transparent)]
    ApiKey(#[from] AuthError),
    #[error("missing bearer token")]
    MissingToken,
    #[error("the bearer token was refused: {0}")]
    Token(TokenProblem),
    #[error("the user id `{claimed}` is not the caller the token names")]
    Mismatch { claimed: String },
    #[error("no user id: the request does not say who the caller is")]
    NoUser,
    #[error(transparent)]
    UserId(#[from] CallerError),
}

/// What was wrong with a token. Only the kind is told, never the token or its claims.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum TokenProblem {
    #[error("it is not a JWT, or its header names an algorithm other than HS256, RS256 or ES256 (`none` is never accepted)")]
    Malformed,
    #[error("no configured key verifies {alg} tokens{}", kid.as_ref().map(|k| format!(" with kid `{k}`")).unwrap_or_default())]
    UnknownKey { alg: String, kid: Option<String> },
    #[error("its signature does not verify")]
    BadSignature,
    #[error("it has expired")]
    Expired,
    #[error("it is not valid yet (nbf)")]
    NotYetValid,
    #[error("it is for another audience")]
    WrongAudience,
    #[error("it comes from another issuer")]
    WrongIssuer,
    #[error("it lacks the `{0}` claim")]
    MissingClaim(String),
    #[error("its `{0}` claim is neither a string nor an integer")]
    ClaimNotAnId(String),
    #[error("its claims are not valid JSON of the expected shape")]
    BadClaims,
}

impl Refusal for IdentityError {
    fn code(&self) -> ErrorCode {
        match self {
            IdentityError::ApiKey(e) => e.code(),
            IdentityError::MissingToken => ErrorCode::Unauthorized,
            IdentityError::Token(_) => ErrorCode::InvalidToken,
            IdentityError::Mismatch { .. } => ErrorCode::UserMismatch,
            IdentityError::NoUser | IdentityError::UserId(_) => ErrorCode::InvalidRequest,
        }
    }

    fn hint(&self) -> String {
        match self {
            IdentityError::ApiKey(_) => format!(
                "Send a key from ROWGATE_API_KEYS as `Authorization: Bearer <key>` (as `{API_KEY_HEADER}: <key>` when JWT verification is on)."
            ),
            IdentityError::MissingToken => {
                "Send the signed-in user's token as `Authorization: Bearer <JWT>`.".into()
            }
            IdentityError::Token(TokenProblem::Expired) => {
                "Get a fresh token from the identity provider and send it as `Authorization: Bearer <JWT>`.".into()
            }
            IdentityError::Token(_) => {
                "Send a token issued for rowgate by the configured identity provider (issuer and audience as configured, signed with HS256, RS256 or ES256).".into()
            }
            IdentityError::Mismatch { .. } => {
                "Leave the user id out (the token names the caller) or send the token's own id."
                    .into()
            }
            IdentityError::NoUser | IdentityError::UserId(_) => format!(
                "The application must send the chat user's id: `user_id` in the body of /v1/query, `?user_id=` on /v1/schema, or the `{USER_HEADER}` header on /mcp."
            ),
        }
    }
}

/// One verification key: HS256 secret, or a public key from the JWKS file.
#[derive(Clone)]
struct VerifyKey {
    alg: Algorithm,
    kid: Option<String>,
    key: DecodingKey,
}

/// Verifies tokens against the configured keys, issuer and audience.
#[derive(Clone)]
pub struct JwtVerifier {
    keys: Vec<VerifyKey>,
    validation: Validation,
    claim: String,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "JwtVerifier({} keys, claim {})",
            self.keys.len(),
            self.claim
        )
    }
}

impl JwtVerifier {
    /// Checks the configuration and loads the keys. Every missing piece is an error: a
    /// verifier without an audience would accept tokens the provider issued for other services.
    pub fn new(config: &JwtConfig) -> Result<JwtVerifier, JwtConfigError> {
        if config.hs256_secret.is_none() && config.jwks_file.is_none() {
            return Err(JwtConfigError::NoKey);
        }
        let issuer = non_empty(&config.issuer).ok_or(JwtConfigError::NoIssuer)?;
        let audience = non_empty(&config.audience).ok_or(JwtConfigError::NoAudience)?;
        let claim = config.claim.trim();
        if claim.is_empty() {
            return Err(JwtConfigError::NoClaim);
        }
        let mut keys = Vec::new();
        if let Some(secret) = &config.hs256_secret {
            if secret.len() < MIN_SECRET_BYTES {
                return Err(JwtConfigError::ShortSecret(secret.len()));
            }
            keys.push(VerifyKey {
                alg: Algorithm::HS256,
                kid: None,
                key: DecodingKey::from_secret(secret.as_bytes()),
            });
        }
        if let Some(path) = &config.jwks_file {
            keys.extend(load_jwks(path)?);
        }
        // Placeholder algorithm: `verify` sets the token's own, after choosing a key for it.
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        validation.validate_nbf = true;
        validation.leeway = config.leeway_secs;
        Ok(JwtVerifier {
            keys,
            validation,
            claim: claim.to_string(),
        })
    }

    /// The caller's id from a token, after checking signature, issuer, audience and expiry.
    pub fn verify(&self, token: &str) -> Result<String, TokenProblem> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenProblem::Malformed)?;
        let candidates = self.keys.iter().filter(|k| {
            k.alg == header.alg
                && match (&k.kid, &header.kid) {
                    (Some(mine), Some(theirs)) => mine == theirs,
                    _ => true,
                }
        });
        let mut tried = false;
        for candidate in candidates {
            tried = true;
            let mut validation = self.validation.clone();
            validation.algorithms = vec![candidate.alg];
            match jsonwebtoken::decode::<Map<String, Value>>(token, &candidate.key, &validation) {
                Ok(data) => return self.caller(&data.claims),
                // Another key of the same algorithm may have signed it (key rotation).
                Err(e) if matches!(e.kind(), ErrorKind::InvalidSignature) => continue,
                Err(e) => return Err(problem(e.kind())),
            }
        }
        Err(if tried {
            TokenProblem::BadSignature
        } else {
            TokenProblem::UnknownKey {
                alg: format!("{:?}", header.alg),
                kid: header.kid,
            }
        })
    }

    fn caller(&self, claims: &Map<String, Value>) -> Result<String, TokenProblem> {
        match claims.get(&self.claim) {
            Some(Value::String(id)) => Ok(id.clone()),
            Some(Value::Number(n)) if n.is_i64() || n.is_u64() => Ok(n.to_string()),
            Some(_) => Err(TokenProblem::ClaimNotAnId(self.claim.clone())),
            None => Err(TokenProblem::MissingClaim(self.claim.clone())),
        }
    }
}

fn non_empty(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

fn problem(kind: &ErrorKind) -> TokenProblem {
    match kind {
        ErrorKind::ExpiredSignature => TokenProblem::Expired,
        ErrorKind::ImmatureSignature => TokenProblem::NotYetValid,
        ErrorKind::InvalidAudience => TokenProblem::WrongAudience,
        ErrorKind::InvalidIssuer => TokenProblem::WrongIssuer,
        ErrorKind::InvalidSignature => TokenProblem::BadSignature,
        ErrorKind::MissingRequiredClaim(claim) => TokenProblem::MissingClaim(claim.clone()),
        ErrorKind::Json(_) => TokenProblem::BadClaims,
        _ => TokenProblem::Malformed,
    }
}

/// Public keys from a JWKS file: RSA keys verify RS256, P-256 keys ES256. Anything else (a
/// symmetric key, another curve or algorithm, an encryption key) is an error rather than
/// silently skipped, so the administrator learns at start-up which key will not work.
fn load_jwks(path: &Path) -> Result<Vec<VerifyKey>, JwtConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| JwtConfigError::ReadJwks {
        path: path.to_path_buf(),
        error: e.to_string(),
    })?;
    let set: JwkSet = serde_json::from_str(&text).map_err(|e| JwtConfigError::ParseJwks {
        path: path.to_path_buf(),
        error: e.to_string(),
    })?;
    if set.keys.is_empty() {
        return Err(JwtConfigError::EmptyJwks(path.to_path_buf()));
    }
    let mut keys = Vec::new();
    for (index, jwk) in set.keys.iter().enumerate() {
        let bad = |problem: &str| JwtConfigError::BadKey {
            path: path.to_path_buf(),
            index,
            problem: problem.to_string(),
        };
        if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
            return Err(bad(
                "it is an encryption key (`use`: `enc`), not a signing key",
            ));
        }
        let alg = match &jwk.algorithm {
            AlgorithmParameters::RSA(_) => Algorithm::RS256,
            AlgorithmParameters::EllipticCurve(ec) if ec.curve == EllipticCurve::P256 => {
                Algorithm::ES256
            }
            AlgorithmParameters::EllipticCurve(_) => {
                return Err(bad("only the P-256 curve (ES256) is supported"))
            }
            AlgorithmParameters::OctetKey(_) => {
                return Err(bad(
                    "symmetric keys do not belong in a JWKS file; use ROWGATE_JWT_HS256_SECRET",
                ))
            }
            AlgorithmParameters::OctetKeyPair(_) => {
                return Err(bad("EdDSA keys are not supported (use RS256 or ES256)"))
            }
        };
        if let Some(declared) = jwk.common.key_algorithm {
            let declared = format!("{declared:?}");
            if declared != format!("{alg:?}") {
                return Err(bad(&format!(
                    "`alg` is {declared}, but only {alg:?} is supported for this key type"
                )));
            }
        }
        let key = DecodingKey::from_jwk(jwk).map_err(|e| bad(&e.to_string()))?;
        keys.push(VerifyKey {
            alg,
            kid: jwk.common.key_id.clone(),
            key,
        });
    }
    Ok(keys)
}

/// How callers prove who they are: API keys, and optionally a verified token.
#[derive(Debug, Clone, Default)]
pub struct Identity {
    pub keys: ApiKeys,
    pub jwt: Option<JwtVerifier>,
}

impl Identity {
    /// Only the API key, as [`Identity::authenticate`] reads it (`Authorization: Bearer`, or
    /// the API-key header when the `Authorization` header carries a JWT): for endpoints that
    /// name no caller, such as `/metrics`.
    pub fn check_key(&self, headers: &HeaderMap) -> Result<(), IdentityError> {
        let (name, prefix) = match self.jwt {
            None => (header::AUTHORIZATION.as_str(), ""),
            Some(_) => (API_KEY_HEADER, "Bearer "),
        };
        let presented = headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(|v| format!("{prefix}{v}"));
        Ok(self.keys.check(presented.as_deref())?)
    }

    /// The authenticated caller's id. `claimed_user` is the id the request names (body field,
    /// query parameter or [`USER_HEADER`]): required without JWT; with JWT optional, and when
    /// given it must equal the token's.
    pub fn authenticate(
        &self,
        headers: &HeaderMap,
        claimed_user: Option<&str>,
    ) -> Result<String, IdentityError> {
        let authorization = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let Some(jwt) = &self.jwt else {
            self.keys.check(authorization)?;
            let user = claimed_user.ok_or(IdentityError::NoUser)?;
            caller::validate_user_id(user)?;
            return Ok(user.to_string());
        };
        if !self.keys.is_empty() {
            let key = headers
                .get(API_KEY_HEADER)
                .and_then(|v| v.to_str().ok())
                .map(|k| format!("Bearer {k}"));
            self.keys.check(key.as_deref())?;
        }
        let token = authorization
            .and_then(|h| h.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(IdentityError::MissingToken)?;
        let user = jwt.verify(token).map_err(IdentityError::Token)?;
        caller::validate_user_id(&user)?;
        match claimed_user {
            Some(claimed) if claimed != user => Err(IdentityError::Mismatch {
                claimed: claimed.to_string(),
            }),
            _ => Ok(user),
        }
    }

    /// Whether requests must prove themselves (a key or a token), as a non-loopback bind needs.
    pub fn is_required(&self) -> bool {
        self.jwt.is_some() || !self.keys.is_empty()
    }
}
