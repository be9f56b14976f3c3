//! `availability:changed`: whether the project can take a chat now. Ephemeral.
//!
//! The widget decides between the chat and the offline form from this. It gets the state once in
//! [`crate::api::WidgetConfig`] (`POST /api/widget/session`) and live on the project's
//! availability channel (`project:{id}:availability`, [`crate::channel::Channel::ProjectAvailability`]),
//! which a visitor of the project may join before any conversation exists. The server publishes
//! it when an agent's status changes (a status switch, login, expiry, disabling) and when the
//! project's business hours open or close, and it sends the current state to every socket that
//! joins the channel, so a (re)join never shows a stale form.

use serde::{Deserialize, Serialize};

use crate::ids::ProjectId;

/// Whether the widget should offer the offline form instead of a chat with a human: no agent
/// online, or outside business hours. The one rule behind both
/// [`crate::api::WidgetConfig::show_offline_form`] and [`AvailabilityChanged::show_offline_form`].
pub fn shows_offline_form(agents_online: u32, within_business_hours: bool) -> bool {
    agents_online == 0 || !within_business_hours
}

/// `availability:changed`, on `project:{id}:availability`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AvailabilityChanged {
    /// The project.
    pub project_id: ProjectId,
    /// How many agents are online now.
    pub agents_online: u32,
    /// Whether now is inside the project's business hours (always true without hours).
    pub within_business_hours: bool,
    /// Offer the offline form instead of a chat with a human ([`shows_offline_form`]).
    pub show_offline_form: bool,
}

impl AvailabilityChanged {
    /// The state of `project`, with `show_offline_form` derived by [`shows_offline_form`].
    pub fn new(project_id: ProjectId, agents_online: u32, within_business_hours: bool) -> Self {
        AvailabilityChanged {
            project_id,
            agents_online,
            within_business_hours,
            show_offline_form: shows_offline_form(agents_online, within_business_hours),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_form_shows_without_agents_or_outside_hours() {
        assert!(!shows_offline_form(1, true));
        assert!(shows_offline_form(0, true));
        assert!(shows_offline_form(3, false));
        assert!(shows_offline_form(0, false));
    }

    #[test]
    fn wire_shape() {
        let e = AvailabilityChanged::new(ProjectId::new("p1"), 0, true);
        assert_eq!(
            serde_json::to_value(&e).unwrap(),
            serde_json::json!({"project_id": "p1", "agents_online": 0, "within_business_hours": true, "show_offline_form": true})
        );
    }
}
