//! `fetch` with the API's conventions: JSON bodies, `Authorization: Bearer`, answers parsed by
//! the browser's `JSON.parse`, errors mapped to [`ClientError`] with the server's code and
//! message.

use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{AbortSignal, Headers, Request, RequestInit, Response};

use crate::error::ClientError;

fn network(e: &JsValue) -> ClientError {
    let msg = js_sys::Reflect::get(e, &JsValue::from_str("message"))
        .ok()
        .and_then(|m| m.as_string())
        .unwrap_or_else(|| "fetch failed".to_owned());
    ClientError::Network(msg)
}

/// Sends a request; resolves to the parsed body of a 2xx answer (`undefined` for 204).
pub(crate) async fn request(
    method: &str,
    url: &str,
    token: Option<&str>,
    body: Option<&str>,
    signal: Option<&AbortSignal>,
) -> Result<JsValue, ClientError> {
    let init = RequestInit::new();
    init.set_method(method);
    let headers = Headers::new().map_err(|e| network(&e))?;
    if let Some(token) = token {
        let mut v = String::from("Bearer ");
        v.push_str(token);
        headers.set("Authorization", &v).map_err(|e| network(&e))?;
    }
    if let Some(body) = body {
        headers.set("Content-Type", "application/json").map_err(|e| network(&e))?;
        init.set_body(&JsValue::from_str(body));
    }
    init.set_headers(&headers);
    if let Some(signal) = signal {
        init.set_signal(Some(signal));
    }
    let request = Request::new_with_str_and_init(url, &init).map_err(|e| network(&e))?;
    let window = web_sys::window().ok_or(ClientError::NotReady("no window"))?;
    let response = JsFuture::from(window.fetch_with_request(&request)).await.map_err(|e| network(&e))?;
    let response: Response = response.dyn_into().map_err(|e| network(&e))?;
    let text = match response.text() {
        Ok(p) => JsFuture::from(p).await.map_err(|e| network(&e))?.as_string().unwrap_or_default(),
        Err(e) => return Err(network(&e)),
    };
    let body = super::text_to_js(&text);
    if response.ok() {
        Ok(body)
    } else {
        let field = |name| super::path_str(&body, &["error", name]);
        Err(ClientError::from_parts(response.status(), field("code"), field("message")))
    }
}
