//! The user's settings: which network, which Esplora server, when to lock. Stored once for the
//! whole store (not per network), validated before they are stored.

use core::fmt;

use bitcoin::Network;
use serde::{Deserialize, Serialize};
use ts_rs::TS;

use crate::store::Store;
use crate::WalletError;

const SETTINGS_KEY: &str = "settings";
/// Bounds of the auto-lock delay, minutes.
pub const AUTO_LOCK_MINUTES: core::ops::RangeInclusive<u32> = 1..=24 * 60;

/// What the user chose.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(rename_all = "camelCase")]
pub struct Settings {
    /// The network, and so the wallet, in use.
    #[ts(type = r#""bitcoin" | "testnet" | "testnet4" | "signet" | "regtest""#)]
    pub network: Network,
    /// The Esplora REST API base URL for that network.
    pub esplora_url: String,
    /// Minutes of inactivity before the wallet locks itself.
    pub auto_lock_minutes: u32,
}

/// Why settings were refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SettingsError(pub String);

impl fmt::Display for SettingsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SettingsError {}

/// A public Esplora server for `network` (the local chain of `make run` for regtest).
pub fn default_esplora(network: Network) -> &'static str {
    match network {
        Network::Bitcoin => "https://mempool.space/api",
        Network::Testnet => "https://mempool.space/testnet/api",
        Network::Testnet4 => "https://mempool.space/testnet4/api",
        Network::Signet => "https://mempool.space/signet/api",
        Network::Regtest => "http://127.0.0.1:3002",
    }
}

/// Whether `url`'s host is this machine (`localhost` or a loopback address): the only place
/// plain `http` is accepted, for chain data and for sites alike.
pub(crate) fn on_this_machine(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(name)) => name == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

impl Settings {
    /// Defaults for `network`.
    pub fn for_network(network: Network) -> Self {
        Self {
            network,
            esplora_url: default_esplora(network).to_owned(),
            auto_lock_minutes: 15,
        }
    }

    /// Checks the settings and normalises the URL (no trailing slash). Plain `http` is allowed
    /// only for this machine: chain data from elsewhere must come over TLS.
    pub fn validated(mut self) -> Result<Self, SettingsError> {
        let url = url::Url::parse(self.esplora_url.trim())
            .map_err(|e| SettingsError(format!("esplora URL: {e}")))?;
        match url.scheme() {
            "https" => {}
            "http" if on_this_machine(&url) => {}
            "http" => {
                return Err(SettingsError(
                    "esplora URL: use https (plain http only for localhost)".into(),
                ))
            }
            other => {
                return Err(SettingsError(format!(
                    "esplora URL: unsupported scheme {other}"
                )))
            }
        }
        if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
            return Err(SettingsError(
                "esplora URL: no query, fragment or credentials".into(),
            ));
        }
        self.esplora_url = url.as_str().trim_end_matches('/').to_owned();
        if !AUTO_LOCK_MINUTES.contains(&self.auto_lock_minutes) {
            return Err(SettingsError(format!(
                "auto-lock: between {} and {} minutes",
                AUTO_LOCK_MINUTES.start(),
                AUTO_LOCK_MINUTES.end()
            )));
        }
        Ok(self)
    }

    /// The stored settings, or `default` when none are stored.
    pub async fn load<S: Store>(store: &S, default: Network) -> Result<Self, WalletError> {
        match store.get(SETTINGS_KEY).await? {
            Some(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| WalletError::Corrupt(format!("settings: {e}"))),
            None => Ok(Self::for_network(default)),
        }
    }

    /// Stores these settings.
    pub async fn save<S: Store>(&self, store: &S) -> Result<(), WalletError> {
        let bytes = serde_json::to_vec(self).map_err(|e| WalletError::Corrupt(e.to_string()))?;
        store.put(SETTINGS_KEY, bytes).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    fn with_url(url: &str) -> Result<Settings, SettingsError> {
        Settings {
            esplora_url: url.into(),
            ..Settings::for_network(Network::Signet)
        }
        .validated()
    }

    #[test]
    fn urls_are_checked_and_normalised() {
        assert_eq!(
            with_url(" https://mempool.space/signet/api/ ")
                .expect("ok")
                .esplora_url,
            "https://mempool.space/signet/api"
        );
        assert!(with_url("http://127.0.0.1:3002").is_ok());
        assert!(with_url("http://localhost:3002").is_ok());
        assert!(with_url("http://[::1]:3002").is_ok());
        for bad in [
            "http://example.com/api",
            "http://10.0.0.1/api",
            "ftp://example.com",
            "mempool.space/api",
            "https://user:pw@example.com/api",
            "https://example.com/api?x=1",
            "",
        ] {
            assert!(with_url(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn auto_lock_is_bounded() {
        let mut s = Settings::for_network(Network::Regtest);
        s.auto_lock_minutes = 0;
        assert!(s.clone().validated().is_err());
        s.auto_lock_minutes = 24 * 60 + 1;
        assert!(s.clone().validated().is_err());
        s.auto_lock_minutes = 5;
        assert!(s.validated().is_ok());
    }

    #[tokio::test]
    async fn settings_round_trip_with_defaults() {
        let store = MemoryStore::default();
        let loaded = Settings::load(&store, Network::Signet).await.expect("load");
        assert_eq!(loaded, Settings::for_network(Network::Signet));
        let mine = with_url("https://blockstream.info/signet/api").expect("ok");
        mine.save(&store).await.expect("save");
        assert_eq!(
            Settings::load(&store, Network::Regtest)
                .await
                .expect("load"),
            mine
        );
        store.put(SETTINGS_KEY, b"{".to_vec()).await.expect("put");
        assert!(Settings::load(&store, Network::Regtest).await.is_err());
    }
}
