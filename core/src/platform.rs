//! Push platforms and sets of them.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::ValidationError;

/// A vendor push service.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Platform {
    /// Apple Push Notification service (iOS, iPadOS, macOS).
    Apns,
    /// Firebase Cloud Messaging (Android).
    Fcm,
    /// Windows Push Notification Services.
    Wns,
    /// Web Push (RFC 8030) to browsers.
    #[serde(rename = "webpush")]
    WebPush,
}

impl Platform {
    /// Every platform, in a fixed order.
    pub const ALL: [Platform; 4] = [
        Platform::Apns,
        Platform::Fcm,
        Platform::Wns,
        Platform::WebPush,
    ];

    /// The lowercase name used in JSON, metrics and logs.
    pub const fn as_str(self) -> &'static str {
        match self {
            Platform::Apns => "apns",
            Platform::Fcm => "fcm",
            Platform::Wns => "wns",
            Platform::WebPush => "webpush",
        }
    }

    /// Whether the platform can take a silent push (APNs background, FCM data, WNS raw).
    ///
    /// Browsers require a visible notification for every push, so Web Push endpoints never get
    /// sync signals.
    pub const fn supports_silent_push(self) -> bool {
        !matches!(self, Platform::WebPush)
    }

    const fn bit(self) -> u8 {
        match self {
            Platform::Apns => 1,
            Platform::Fcm => 2,
            Platform::Wns => 4,
            Platform::WebPush => 8,
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Platform {
    type Err = ValidationError;

    /// Accepts our names (`apns`, `fcm`, `wns`, `webpush`) and Graph's (`iOS`, `Android`,
    /// `Windows`, `WebPush`), case-insensitively.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "apns" | "ios" | "macos" => Ok(Platform::Apns),
            "fcm" | "android" => Ok(Platform::Fcm),
            "wns" | "windows" => Ok(Platform::Wns),
            "webpush" | "web_push" | "web" => Ok(Platform::WebPush),
            _ => Err(ValidationError::new(
                "platform",
                format!("unknown platform {s:?}; expected apns, fcm, wns or webpush"),
            )),
        }
    }
}

/// A set of platforms, e.g. a notification's targets. The empty set is never a valid target.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct PlatformSet(u8);

impl PlatformSet {
    /// Every platform.
    pub const ALL: PlatformSet = PlatformSet(0b1111);
    /// No platform.
    pub const EMPTY: PlatformSet = PlatformSet(0);

    /// A set of one platform.
    pub const fn only(p: Platform) -> Self {
        PlatformSet(p.bit())
    }

    /// This set plus `p`.
    #[must_use]
    pub const fn with(self, p: Platform) -> Self {
        PlatformSet(self.0 | p.bit())
    }

    /// Whether `p` is in the set.
    pub const fn contains(self, p: Platform) -> bool {
        self.0 & p.bit() != 0
    }

    /// Whether the set is empty.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The platforms in the set, in [`Platform::ALL`] order.
    pub fn iter(self) -> impl Iterator<Item = Platform> {
        Platform::ALL.into_iter().filter(move |p| self.contains(*p))
    }

    /// The raw bits (apns=1, fcm=2, wns=4, webpush=8), for stores that keep the set in a column.
    pub const fn bits(self) -> u8 {
        self.0
    }

    /// From raw bits; unknown bits are dropped.
    pub const fn from_bits(bits: u8) -> Self {
        PlatformSet(bits & 0b1111)
    }
}

impl FromIterator<Platform> for PlatformSet {
    fn from_iter<I: IntoIterator<Item = Platform>>(iter: I) -> Self {
        iter.into_iter().fold(PlatformSet::EMPTY, PlatformSet::with)
    }
}

impl fmt::Debug for PlatformSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

impl Serialize for PlatformSet {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.iter())
    }
}

impl<'de> Deserialize<'de> for PlatformSet {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let names = Vec::<String>::deserialize(d)?;
        names
            .iter()
            .map(|n| n.parse::<Platform>().map_err(serde::de::Error::custom))
            .collect()
    }
}
