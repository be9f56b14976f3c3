#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

pub mod error;
pub mod subs;
pub mod url;

#[cfg(target_arch = "wasm32")]
mod browser;
#[cfg(target_arch = "wasm32")]
pub use browser::HandoffClient;
#[cfg(all(target_arch = "wasm32", feature = "supabase"))]
pub use browser::{connect_supabase, RealtimeChannel, RealtimeClient};
#[cfg(all(target_arch = "wasm32", feature = "agent"))]
pub use browser::{counts_as_unread, AgentClient};

pub use error::ClientError;
pub use handoff_protocol;

/// The decimal digits of `n` (refs, statuses, ids), without `core::fmt`: the browser build
/// leaves the formatting machinery out.
pub(crate) fn decimal(mut n: u64) -> String {
    let mut digits = Vec::new();
    loop {
        digits.push(b'0' + u8::try_from(n % 10).unwrap_or(0));
        n /= 10;
        if n == 0 {
            break;
        }
    }
    digits.reverse();
    String::from_utf8(digits).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #[test]
    fn decimal_digits() {
        for n in [0, 7, 10, 409, 65_535, u64::MAX] {
            assert_eq!(super::decimal(n), n.to_string());
        }
    }
}
