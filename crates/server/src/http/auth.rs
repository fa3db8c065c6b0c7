//! Bearer tokens scoped by name prefix (`--tokens FILE`). Without the flag
//! every request is served, as before.
//!
//! The file has one grant per line, `TOKEN PERMISSION PREFIX`; `#` starts
//! a comment. In place of a token, `cert:NAME` grants to the clients whose
//! certificate (`--https --client-ca`) has the common name NAME, when they
//! send no token: a certificate proves who a client is, the file says what
//! it may do. `read` reads, watches and shows the history of names under
//! the prefix; `lock` also acquires, renews and releases them; `admin`
//! does everything. A prefix of `*` is every name, and the cluster-wide
//! paths (`/v1/cluster`, `/metrics`, the page's event stream) need a
//! grant on every name. `/healthz` and the page's own files (which hold no
//! data) are always served. SIGHUP reads the file again; a file that does
//! not parse leaves the tokens as they were.

use super::caller::Caller;
use super::error::ApiError;
use super::locks::{HISTORY_SUFFIX, LOCKS_PREFIX};
use super::AppState;
use axum::extract::{Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

/// What a grant allows; each includes the ones before it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Permission {
    Read,
    Lock,
    Admin,
}

impl Permission {
    fn word(self) -> &'static str {
        match self {
            Permission::Read => "read",
            Permission::Lock => "lock",
            Permission::Admin => "admin",
        }
    }
}

/// One line of the file: a permission on the names under a prefix
/// (`None`: every name).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Grant {
    permission: Permission,
    prefix: Option<String>,
}

/// Why a tokens file was refused; names the line.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TokensError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("line {line}: {problem} (write: TOKEN read|lock|admin PREFIX, with * for every name)")]
    Line { line: usize, problem: String },
    #[error("no token in the file: every request would be refused")]
    Empty,
}

/// Tokens and certificate names, each with its grants. Apart, so that no
/// bearer token can pass for a certificate.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Tokens {
    grants: HashMap<String, Vec<Grant>>,
    certificates: HashMap<String, Vec<Grant>>,
}

/// How a line names a client certificate rather than a token.
const CERTIFICATE_PREFIX: &str = "cert:";

/// The shortest token accepted: anything shorter is guessable.
const MIN_TOKEN_CHARS: usize = 16;

impl Tokens {
    pub fn parse(text: &str) -> Result<Tokens, TokensError> {
        let mut tokens = Tokens::default();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let bad = |problem: String| TokensError::Line {
                line: i + 1,
                problem,
            };
            let fields: Vec<&str> = line.split_whitespace().collect();
            let [token, permission, prefix] = fields[..] else {
                return Err(bad(format!("{} fields, not 3", fields.len())));
            };
            let certificate = token.strip_prefix(CERTIFICATE_PREFIX);
            if certificate.is_some_and(|name| name.is_empty() || !name.is_ascii()) {
                return Err(bad(
                    "cert: is followed by the common name of a client certificate".to_string(),
                ));
            }
            let guessable = token.len() < MIN_TOKEN_CHARS
                || !token
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-._~+/=".contains(c));
            if certificate.is_none() && guessable {
                return Err(bad(format!(
                    "a token is at least {MIN_TOKEN_CHARS} characters of letters, digits and - . _ ~ + / ="
                )));
            }
            let permission = match permission {
                "read" => Permission::Read,
                "lock" => Permission::Lock,
                "admin" => Permission::Admin,
                other => return Err(bad(format!("unknown permission {other:?}"))),
            };
            let prefix = (prefix != "*").then(|| prefix.to_string());
            let (table, key) = match certificate {
                Some(name) => (&mut tokens.certificates, name),
                None => (&mut tokens.grants, token),
            };
            table
                .entry(key.to_string())
                .or_default()
                .push(Grant { permission, prefix });
        }
        if tokens.grants.is_empty() && tokens.certificates.is_empty() {
            return Err(TokensError::Empty);
        }
        Ok(tokens)
    }

    pub fn load(path: &Path) -> Result<Tokens, TokensError> {
        let text = std::fs::read_to_string(path).map_err(|source| TokensError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Tokens::parse(&text)
    }

    /// Whether `caller` may do `need` on `name` (`None`: on every name).
    fn check(&self, caller: &Caller, need: Permission, name: Option<&str>) -> Result<(), Denied> {
        let grants = match caller {
            Caller::Token(token) => self.grants.get(&**token),
            Caller::Certificate(name) => self.certificates.get(&**name),
            Caller::Address(_) | Caller::Unknown => return Err(Denied::Anonymous),
        };
        let grants = grants.ok_or(Denied::Unknown)?;
        let covers = |g: &Grant| match (&g.prefix, name) {
            (None, _) => true,
            (Some(prefix), Some(name)) => name.starts_with(prefix.as_str()),
            (Some(_), None) => false,
        };
        if grants.iter().any(|g| g.permission >= need && covers(g)) {
            Ok(())
        } else {
            Err(Denied::NotAllowed)
        }
    }
}

enum Denied {
    Anonymous,
    Unknown,
    NotAllowed,
}

/// The tokens a node checks, from the file it was started with.
pub struct Auth {
    path: PathBuf,
    tokens: RwLock<Arc<Tokens>>,
}

impl Auth {
    pub fn load(path: &Path) -> Result<Auth, TokensError> {
        Ok(Auth {
            path: path.to_path_buf(),
            tokens: RwLock::new(Arc::new(Tokens::load(path)?)),
        })
    }

    /// Read the file again; on error the tokens stay as they were.
    pub fn reload(&self) -> Result<(), TokensError> {
        let fresh = Arc::new(Tokens::load(&self.path)?);
        *self.tokens.write().unwrap_or_else(|e| e.into_inner()) = fresh;
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn current(&self) -> Arc<Tokens> {
        self.tokens
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// What a request needs: a permission, on one name or on every name;
/// `None` when it is served to anyone.
fn needs(method: &Method, path: &str, query: Option<&str>) -> Option<(Permission, Option<String>)> {
    if matches!(
        path,
        "/healthz" | "/ui" | "/ui/" | "/ui/app.js" | "/ui/style.css"
    ) {
        return None;
    }
    if path == "/v1/members" && !matches!(*method, Method::GET | Method::HEAD) {
        // Changing the members is an operator's act.
        return Some((Permission::Admin, None));
    }
    let Some(name) = path.strip_prefix(LOCKS_PREFIX) else {
        return Some((Permission::Read, None));
    };
    if matches!(*method, Method::GET | Method::HEAD) {
        let name = name.strip_suffix(HISTORY_SUFFIX).unwrap_or(name);
        Some((Permission::Read, Some(name.to_string())))
    } else if *method == Method::DELETE && forced(query) {
        // Ending someone else's grant is an operator's act.
        Some((Permission::Admin, Some(name.to_string())))
    } else {
        Some((Permission::Lock, Some(name.to_string())))
    }
}

/// Whether a query asks for a forced release (`force=` in any form: the
/// handler refuses a value other than `true`, after this has asked for
/// `admin`).
fn forced(query: Option<&str>) -> bool {
    query.is_some_and(|q| {
        q.split('&')
            .any(|pair| pair.split('=').next() == Some("force"))
    })
}

/// Refuse a request whose token does not allow it: `401` without a known
/// token, `403` with one that lacks the permission.
pub async fn authenticate(State(app): State<AppState>, request: Request, next: Next) -> Response {
    let Some(auth) = &app.auth else {
        return next.run(request).await;
    };
    let Some((need, name)) = needs(
        request.method(),
        request.uri().path(),
        request.uri().query(),
    ) else {
        return next.run(request).await;
    };
    let caller = request
        .extensions()
        .get::<Caller>()
        .cloned()
        .unwrap_or(Caller::Unknown);
    let what = match &name {
        Some(name) => format!("{} {name}", need.word()),
        None => format!("{} every name (*), which this path needs", need.word()),
    };
    let this = match caller {
        Caller::Certificate(_) => "this client certificate",
        _ => "this token",
    };
    match auth.current().check(&caller, need, name.as_deref()) {
        Ok(()) => next.run(request).await,
        Err(Denied::Anonymous) => {
            app.metrics.http_refused("no_token");
            ApiError::unauthorized(
                "this node requires a token: send Authorization: Bearer TOKEN".to_string(),
            )
            .into_response()
        }
        Err(Denied::Unknown) => {
            app.metrics.http_refused("unknown_token");
            ApiError::unauthorized(format!("{this} is not known to this node")).into_response()
        }
        Err(Denied::NotAllowed) => {
            app.metrics.http_refused("not_allowed");
            ApiError::forbidden(format!("{this} may not {what}")).into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "\
# ci jobs take their own locks
ci-token-0123456789abcdef   lock  jobs/
ci-token-0123456789abcdef   read  *      # and may look at every name
viewer-token-0123456789ab   read  *
admin-token-0123456789abc   admin *
";

    #[test]
    fn each_permission_allows_what_it_says_under_its_prefix() {
        let t = Tokens::parse(FILE).expect("parses");
        let ok = |token: &str, need, name: Option<&str>| {
            t.check(&Caller::Token(token.into()), need, name).is_ok()
        };
        let ci = "ci-token-0123456789abcdef";
        assert!(ok(ci, Permission::Lock, Some("jobs/nightly")));
        assert!(!ok(ci, Permission::Lock, Some("scheduler")));
        assert!(ok(ci, Permission::Read, Some("scheduler")));
        assert!(ok(ci, Permission::Read, None));
        let viewer = "viewer-token-0123456789ab";
        assert!(!ok(viewer, Permission::Lock, Some("jobs/nightly")));
        assert!(ok("admin-token-0123456789abc", Permission::Admin, None));
        assert!(matches!(
            t.check(
                &Caller::Token("nobody-0123456789abcdef".into()),
                Permission::Read,
                None
            ),
            Err(Denied::Unknown)
        ));
    }

    #[test]
    fn a_certificate_name_has_its_own_grants_that_no_token_can_claim() {
        let t = Tokens::parse("cert:ci-runner lock jobs/\ncert:viewer read *\n").expect("parses");
        let runner = Caller::Certificate("ci-runner".into());
        assert!(t.check(&runner, Permission::Lock, Some("jobs/a")).is_ok());
        assert!(matches!(
            t.check(&runner, Permission::Lock, Some("web/a")),
            Err(Denied::NotAllowed)
        ));
        assert!(matches!(
            t.check(
                &Caller::Certificate("stranger".into()),
                Permission::Read,
                None
            ),
            Err(Denied::Unknown)
        ));
        for token in ["cert:ci-runner", "ci-runner"] {
            assert!(matches!(
                t.check(
                    &Caller::Token(token.into()),
                    Permission::Read,
                    Some("jobs/a")
                ),
                Err(Denied::Unknown)
            ));
        }
        let ip = std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);
        assert!(matches!(
            t.check(&Caller::Address(ip), Permission::Read, None),
            Err(Denied::Anonymous)
        ));
        assert!(matches!(
            Tokens::parse("cert: read *"),
            Err(TokensError::Line { line: 1, .. })
        ));
    }

    #[test]
    fn a_bad_line_is_refused_naming_it() {
        for (text, line) in [
            ("short read *", 1),
            ("\n\nlong-enough-token-123 write *", 3),
            ("long-enough-token-123 read", 1),
            ("long-enough-token-123 read * extra", 1),
        ] {
            match Tokens::parse(text) {
                Err(TokensError::Line { line: l, .. }) => assert_eq!(l, line, "{text:?}"),
                other => panic!("{text:?}: {other:?}"),
            }
        }
        assert!(matches!(
            Tokens::parse("# nothing\n"),
            Err(TokensError::Empty)
        ));
    }

    #[test]
    fn requests_need_what_they_touch() {
        assert_eq!(needs(&Method::GET, "/healthz", None), None);
        assert_eq!(needs(&Method::GET, "/ui", None), None);
        assert_eq!(
            needs(&Method::GET, "/ui/events", None),
            Some((Permission::Read, None))
        );
        assert_eq!(
            needs(&Method::GET, "/v1/locks/jobs/a/history", None),
            Some((Permission::Read, Some("jobs/a".into())))
        );
        assert_eq!(
            needs(
                &Method::DELETE,
                "/v1/locks/jobs/a",
                Some("holder=h&token=1")
            ),
            Some((Permission::Lock, Some("jobs/a".into())))
        );
        assert_eq!(
            needs(
                &Method::DELETE,
                "/v1/locks/jobs/a",
                Some("token=1&force=true")
            ),
            Some((Permission::Admin, Some("jobs/a".into())))
        );
        assert_eq!(
            needs(&Method::GET, "/metrics", None),
            Some((Permission::Read, None))
        );
    }
}
