//! The widget's per-project settings the session answer carries for the widget: its language
//! (`theme.locale`) and its sound (`theme.sound`), as `project set --locale / --sound` store them.

use serde_json::json;

use crate::both_dbs;
use crate::harness::{Db, TestServer};

both_dbs!(the_session_carries_the_widgets_language_and_sound, |s: TestServer| async move {
    let session = || async {
        let (st, v) =
            s.call("POST", "/api/widget/session", None, Some(json!({"project_key": s.public_key}))).await;
        assert_eq!(st, 200, "{v}");
        v["config"]["theme"].clone()
    };
    // Defaults: the visitor's browser language, sound on.
    let theme = session().await;
    assert_eq!((theme["locale"].as_str(), theme["sound"].as_bool()), (Some(""), Some(true)), "{theme}");

    let set = handoff_protocol::api::Theme { locale: "pt-BR".to_owned(), sound: false, ..Default::default() };
    s.svc.store().set_theme(&s.project, &set).await.unwrap();
    let theme = session().await;
    assert_eq!((theme["locale"].as_str(), theme["sound"].as_bool()), (Some("pt-BR"), Some(false)), "{theme}");
    assert_eq!(theme["title"], "Chat with us", "the rest of the theme is kept");
});
