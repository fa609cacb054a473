//! Kubernetes Events on DR-Syncer's objects, published under one reporter name.
//!
//! Events are advisory: a failure to publish one is logged and never fails a reconcile.

use kube::Resource;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};

use super::text::truncate;

/// Name the controller reports in Events.
pub const CONTROLLER_NAME: &str = "dr-syncer-controller";

/// Longest event note written; the API server refuses longer ones.
const NOTE_LIMIT: usize = 1000;

/// Publishes Events on our objects as `dr-syncer-controller` (with the instance name, when
/// the process has one, so replicas can be told apart).
#[derive(Clone)]
pub struct EventPublisher {
    recorder: Recorder,
}

impl EventPublisher {
    /// A publisher writing through `client`.
    pub fn new(client: kube::Client, instance: Option<String>) -> Self {
        let reporter = Reporter {
            controller: CONTROLLER_NAME.to_owned(),
            instance,
        };
        Self {
            recorder: Recorder::new(client, reporter),
        }
    }

    /// Publishes an Event on `obj`; failures are logged, never fatal (events are advisory).
    pub async fn publish<K>(&self, obj: &K, warning: bool, reason: &str, action: &str, note: String)
    where
        K: Resource<DynamicType = ()>,
    {
        let event = Event {
            type_: if warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: reason.to_owned(),
            note: Some(truncate(note, NOTE_LIMIT)),
            action: action.to_owned(),
            secondary: None,
        };
        if let Err(error) = self.recorder.publish(&event, &obj.object_ref(&())).await {
            tracing::warn!(%error, reason, "publishing an event failed");
        }
    }
}
