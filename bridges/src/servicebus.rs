//! Azure Service Bus: the connection string and shared access signature
//! (SAS) tokens.
//!
//! Service Bus speaks AMQP 1.0 over TLS (port 5671) and authorizes each
//! link by claims-based security (CBS): before attaching a link to an
//! entity, the client puts a SAS token for that entity's URI on the
//! `$cbs` node. A token is
//!
//! ```text
//! SharedAccessSignature sr=<uri>&sig=<signature>&se=<expiry>&skn=<rule>
//! ```
//!
//! where `<uri>` is the entity's URI (`sb://<host>/<entity>`) URL-encoded,
//! `<expiry>` seconds since the Unix epoch, and `<signature>` the
//! URL-encoded base64 of HMAC-SHA256 over `<uri>\n<expiry>`, keyed with
//! the rule's key (its text, as the portal shows it). This module makes
//! the tokens; [`crate::amqp1`] puts them over CBS.

use std::time::{Duration, SystemTime};

use base64::Engine as _;
use hmac::{Hmac, Mac as _};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use sha2::Sha256;

/// The CBS token type of a SAS token.
pub const SAS_TOKEN_TYPE: &str = "servicebus.windows.net:sastoken";
/// How long a token is valid; links are re-authorized (the connection
/// renewed) well before, after [`TOKEN_RENEW_AFTER`].
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(60 * 60);
/// When a connection's tokens are renewed.
pub const TOKEN_RENEW_AFTER: Duration = Duration::from_secs(45 * 60);
/// The AMQP-over-TLS port.
pub const AMQPS_PORT: u16 = 5671;

/// What URL encoding leaves alone: letters, digits and `-_.~` (as
/// Python's `quote_plus` and Azure's SDKs encode).
const URL_ENCODED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// A namespace's connection string, as the Azure portal shows it:
/// `Endpoint=sb://<namespace>.servicebus.windows.net/;SharedAccessKeyName=<rule>;SharedAccessKey=<key>`.
#[derive(Clone, PartialEq, Eq)]
pub struct ConnectionString {
    /// The namespace's host name.
    pub host: String,
    /// The shared access policy (rule) name.
    pub key_name: String,
    /// The policy's key.
    pub key: String,
}

impl std::fmt::Debug for ConnectionString {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionString")
            .field("host", &self.host)
            .field("key_name", &self.key_name)
            .finish_non_exhaustive()
    }
}

impl ConnectionString {
    /// Parses `text`; the error says what is missing or wrong, never
    /// repeating the key.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut endpoint = None;
        let mut key_name = None;
        let mut key = None;
        for part in text.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            let Some((name, value)) = part.split_once('=') else {
                return Err("a Service Bus connection string is Endpoint=sb://<namespace>.servicebus.windows.net/;SharedAccessKeyName=<rule>;SharedAccessKey=<key>".to_owned());
            };
            match name.trim() {
                "Endpoint" => endpoint = Some(value.trim()),
                "SharedAccessKeyName" => key_name = Some(value.trim()),
                "SharedAccessKey" => key = Some(value.trim()),
                "EntityPath" => {
                    return Err("the connection string names an entity (EntityPath); use the namespace's, and name the entity in source or address".to_owned());
                }
                "SharedAccessSignature" => {
                    return Err("a connection string with a fixed SharedAccessSignature expires; use a SharedAccessKeyName and SharedAccessKey".to_owned());
                }
                // Other settings (UseDevelopmentEmulator, ...) do not
                // change what the bridge does.
                _ => {}
            }
        }
        let host = endpoint
            .ok_or("the connection string has no Endpoint=sb://...")?
            .strip_prefix("sb://")
            .ok_or("the connection string's Endpoint is sb://<namespace>.servicebus.windows.net/")?
            .trim_end_matches('/');
        if host.is_empty() || host.contains(['/', '@', ' ']) {
            return Err(
                "the connection string's Endpoint is sb://<namespace>.servicebus.windows.net/"
                    .to_owned(),
            );
        }
        let key_name = key_name
            .filter(|k| !k.is_empty())
            .ok_or("the connection string has no SharedAccessKeyName")?;
        let key = key
            .filter(|k| !k.is_empty())
            .ok_or("the connection string has no SharedAccessKey")?;
        Ok(Self {
            host: host.to_owned(),
            key_name: key_name.to_owned(),
            key: key.to_owned(),
        })
    }

    /// The URI of an entity (queue, topic, `topic/subscriptions/name`):
    /// the audience its token is for.
    pub fn audience(&self, entity: &str) -> String {
        format!("sb://{}/{}", self.host, entity.trim_start_matches('/'))
    }

    /// A token for `audience` valid until `expiry`.
    pub fn token(&self, audience: &str, expiry: SystemTime) -> String {
        sas_token(audience, &self.key_name, &self.key, expiry)
    }
}

/// A SAS token for `audience`, signed with the policy `key_name`'s `key`,
/// valid until `expiry` (whole seconds).
pub fn sas_token(audience: &str, key_name: &str, key: &str, expiry: SystemTime) -> String {
    let expiry = expiry
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let resource = utf8_percent_encode(audience, URL_ENCODED).to_string();
    let mut mac =
        Hmac::<Sha256>::new_from_slice(key.as_bytes()).expect("HMAC takes a key of any length");
    mac.update(format!("{resource}\n{expiry}").as_bytes());
    let signature = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    format!(
        "SharedAccessSignature sr={resource}&sig={}&se={expiry}&skn={}",
        utf8_percent_encode(&signature, URL_ENCODED),
        utf8_percent_encode(key_name, URL_ENCODED),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONNECTION: &str = "Endpoint=sb://contoso.servicebus.windows.net/;SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey=3hY8bS2Xq0Nk5vW+7aP1dR9eT4uZ6cM/8fL2gJ0iK1o=";

    #[test]
    fn a_token_matches_the_one_azure_sdks_make() {
        // Made with Python's hmac, hashlib, base64 and quote_plus, as
        // azure-servicebus's generate_sas_token does.
        let expected = "SharedAccessSignature sr=sb%3A%2F%2Fcontoso.servicebus.windows.net%2Fevents-payment_received&sig=6qHFfudqvSoMXZEpvbwTUa5HkJxJinubZscfv7JYBKk%3D&se=1767225600&skn=RootManageSharedAccessKey";
        let connection = ConnectionString::parse(CONNECTION).unwrap();
        let audience = connection.audience("events-payment_received");
        assert_eq!(
            audience,
            "sb://contoso.servicebus.windows.net/events-payment_received"
        );
        let expiry = SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_600);
        assert_eq!(connection.token(&audience, expiry), expected);
    }

    #[test]
    fn a_token_has_the_four_fields_in_order() {
        let token = sas_token(
            "sb://ns.servicebus.windows.net/q",
            "send only",
            "k",
            SystemTime::UNIX_EPOCH + Duration::from_secs(10),
        );
        let fields = token
            .strip_prefix("SharedAccessSignature ")
            .unwrap()
            .split('&')
            .map(|f| f.split_once('=').unwrap().0)
            .collect::<Vec<_>>();
        assert_eq!(fields, ["sr", "sig", "se", "skn"]);
        assert!(token.ends_with("&se=10&skn=send%20only"));
    }

    #[test]
    fn a_connection_string_is_read_and_its_mistakes_named() {
        let parsed = ConnectionString::parse(CONNECTION).unwrap();
        assert_eq!(parsed.host, "contoso.servicebus.windows.net");
        assert_eq!(parsed.key_name, "RootManageSharedAccessKey");
        assert!(!format!("{parsed:?}").contains("3hY8"));
        for (bad, names) in [
            ("amqp://h", "Endpoint"),
            (
                "Endpoint=https://h/;SharedAccessKeyName=a;SharedAccessKey=b",
                "sb://",
            ),
            ("Endpoint=sb://h/;SharedAccessKey=b", "SharedAccessKeyName"),
            ("Endpoint=sb://h/;SharedAccessKeyName=a", "SharedAccessKey"),
            (
                "Endpoint=sb://h/;SharedAccessKeyName=a;SharedAccessKey=b;EntityPath=q",
                "EntityPath",
            ),
        ] {
            let why = ConnectionString::parse(bad).unwrap_err();
            assert!(why.contains(names), "{bad}: {why}");
        }
    }
}
