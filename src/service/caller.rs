//! Who is calling: the integration credential that authenticated the request (its id and scope), or
//! the local command line. Every use case asks [`current`] and checks the scope before touching
//! anything, and every audit record names [`Caller::id`].
//!
//! The caller travels as a task-local value set around the whole request ([`acting_as`], by the HTTP
//! layer's authentication); the use cases' signatures stay as they are. Outside any [`acting_as`]
//! (a local command, a test driving the service directly) the caller is [`Caller::local`]: the
//! operator at the console, with the `ADMIN` role.

use std::future::Future;

use crate::model::CredentialScope;

/// The actor id of a local command in audit records.
pub const LOCAL_ACTOR: &str = "cli";
/// The actor id of a request when `restrict_access = false` (no credential is asked for).
pub const ANONYMOUS_ACTOR: &str = "anonymous";

tokio::task_local! {
    static CALLER: Caller;
}

/// The party a use case runs for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    id: String,
    scope: CredentialScope,
}

impl Caller {
    /// The caller authenticated by integration credential `id` with `scope`.
    pub fn credential(id: impl Into<String>, scope: CredentialScope) -> Self {
        Self {
            id: id.into(),
            scope,
        }
    }

    /// A local command (`cli`, `ADMIN`).
    pub fn local() -> Self {
        Self::credential(LOCAL_ACTOR, CredentialScope::Admin)
    }

    /// An unauthenticated request to a server with `restrict_access = false` (`anonymous`, `ADMIN`:
    /// the operator chose to open every method).
    pub fn anonymous() -> Self {
        Self::credential(ANONYMOUS_ACTOR, CredentialScope::Admin)
    }

    /// The id audit records name.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// What the caller may do.
    pub fn scope(&self) -> &CredentialScope {
        &self.scope
    }
}

/// Runs `work` (a request's handling) as `caller`.
pub async fn acting_as<F: Future>(caller: Caller, work: F) -> F::Output {
    CALLER.scope(caller, work).await
}

/// The caller of the running use case ([`Caller::local`] outside [`acting_as`]).
pub fn current() -> Caller {
    CALLER
        .try_with(Clone::clone)
        .unwrap_or_else(|_| Caller::local())
}
