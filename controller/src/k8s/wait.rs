//! Waiting for a condition on one object by watch, with a deadline: the one way the
//! controller waits on the API server (a watch sees the change as it lands; a deadline
//! means a stuck object becomes an error the user reads in a condition, never a hang).

use std::fmt::Debug;
use std::time::Duration;

use kube::Resource;
use kube::api::Api;
use kube::runtime::wait::{Condition, await_condition};
use serde::de::DeserializeOwned;

/// Why a wait ended without the condition holding.
#[derive(Debug, thiserror::Error)]
pub enum WaitError {
    /// The deadline passed first.
    #[error("{name} did not reach the awaited state within {}s", .after.as_secs())]
    TimedOut {
        /// The object awaited.
        name: String,
        /// The deadline that passed.
        after: Duration,
    },
    /// The watch itself failed (RBAC, API server gone).
    #[error("watching {name}: {source}")]
    Watch {
        /// The object awaited.
        name: String,
        /// What the watch reported.
        #[source]
        source: kube::runtime::wait::Error,
    },
}

/// Watches object `name` until `cond` holds, for at most `deadline`, and returns the object
/// as it was when it did (`None`: it holds of an absent object).
pub async fn until<K>(
    api: Api<K>,
    name: &str,
    cond: impl Condition<K>,
    deadline: Duration,
) -> Result<Option<K>, WaitError>
where
    K: Clone + Debug + Send + DeserializeOwned + Resource + 'static,
{
    match tokio::time::timeout(deadline, await_condition(api, name, cond)).await {
        Ok(Ok(object)) => Ok(object),
        Ok(Err(source)) => Err(WaitError::Watch {
            name: name.to_owned(),
            source,
        }),
        Err(_) => Err(WaitError::TimedOut {
            name: name.to_owned(),
            after: deadline,
        }),
    }
}
